//! The fake's blob storage: uploaded bytes are reduced, as they stream in, to what tests and
//! the rules need (size, MD5, a bounded prefix, the malware verdict), so a 60 MB upload costs
//! one chunk of memory, not 60 MB.
//!
//! MD5 is implemented here (RFC 1321) because Altinn's checksums are MD5 and the crate has no
//! MD5 dependency; the unit tests pin it to the RFC's test vectors.

/// The EICAR test string: every virus scanner, Defender included, reports a file containing
/// it as infected, so tests can trigger the malware path with a harmless file.
pub(crate) const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!H+H*";

/// Bytes kept per file for assertions; larger files keep only their size and MD5.
pub(crate) const KEPT_BYTES: usize = 1_000_000;

/// Per-round shift amounts of RFC 1321.
const SHIFTS: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/// floor(|sin(i + 1)| * 2^32), RFC 1321 §3.4 (checked against the formula in the tests).
const SINES: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, 0x698098d8,
    0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
    0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87,
    0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039,
    0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
    0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391,
];

/// Streaming MD5.
#[derive(Clone)]
pub(crate) struct Md5 {
    state: [u32; 4],
    pending: Vec<u8>,
    length: u64,
}

impl Default for Md5 {
    fn default() -> Md5 {
        Md5 { state: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476], pending: Vec::with_capacity(64), length: 0 }
    }
}

impl Md5 {
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block: [u8; 64] = self.pending[..].try_into().expect("64 bytes");
            self.block(&block);
            self.pending.clear();
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            self.block(block.try_into().expect("64 bytes"));
        }
        self.pending.extend_from_slice(blocks.remainder());
    }

    /// The digest as 32 lower-case hex characters, the form Altinn compares checksums in.
    pub fn finish_hex(mut self) -> String {
        let bits = self.length.wrapping_mul(8);
        let mut tail = vec![0x80u8];
        tail.resize((55usize.wrapping_sub(self.pending.len()) % 64) + 1, 0);
        tail.extend_from_slice(&bits.to_le_bytes());
        let length = self.length;
        self.update(&tail);
        self.length = length;
        self.state.iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
    }

    fn block(&mut self, block: &[u8; 64]) {
        let m: Vec<u32> = block.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let [mut a, mut b, mut c, mut d] = self.state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(SINES[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(SHIFTS[(i / 16) * 4 + i % 4]));
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d]) {
            *s = s.wrapping_add(v);
        }
    }
}

/// MD5 of a whole buffer as lower-case hex.
pub fn md5_hex(data: &[u8]) -> String {
    let mut md5 = Md5::default();
    md5.update(data);
    md5.finish_hex()
}

/// What storage learned from one uploaded file.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub size: u64,
    pub md5: String,
    /// The bytes, when the file is at most [`KEPT_BYTES`] long.
    pub bytes: Option<Vec<u8>>,
    /// The file contains the EICAR test string.
    pub infected: bool,
}

/// Consumes a file chunk by chunk.
#[derive(Default)]
pub(crate) struct Sink {
    size: u64,
    md5: Md5,
    kept: Vec<u8>,
    overflowed: bool,
    /// The last `EICAR.len() - 1` bytes, so a signature split across chunks is still found.
    tail: Vec<u8>,
    infected: bool,
}

impl Sink {
    pub fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        self.md5.update(chunk);
        if !self.overflowed {
            if self.kept.len() + chunk.len() <= KEPT_BYTES {
                self.kept.extend_from_slice(chunk);
            } else {
                self.overflowed = true;
                self.kept = Vec::new();
            }
        }
        if !self.infected {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(chunk);
            self.infected = window.windows(EICAR.len()).any(|w| w == EICAR);
            let keep = window.len().min(EICAR.len() - 1);
            self.tail = window.split_off(window.len() - keep);
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Received {
        Received {
            size: self.size,
            md5: self.md5.finish_hex(),
            bytes: (!self.overflowed).then_some(self.kept),
            infected: self.infected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_the_rfc_1321_test_suite() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, digest) in cases {
            assert_eq!(md5_hex(input.as_bytes()), digest, "{input:?}");
        }
    }

    #[test]
    fn the_sine_table_is_the_formula() {
        for (i, k) in SINES.iter().enumerate() {
            assert_eq!(*k, ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32, "{i}");
        }
    }

    #[test]
    fn chunked_input_gives_the_same_digest_and_finds_a_split_signature() {
        let mut data = vec![b'x'; 1000];
        data.extend_from_slice(EICAR);
        data.extend_from_slice(&[b'y'; 300]);
        let mut sink = Sink::default();
        for chunk in data.chunks(7) {
            sink.push(chunk);
        }
        let received = sink.finish();
        assert_eq!(received.md5, md5_hex(&data));
        assert_eq!(received.size, data.len() as u64);
        assert!(received.infected);
        assert_eq!(received.bytes.as_deref(), Some(&data[..]));
        let mut clean = Sink::default();
        clean.push(&EICAR[..20]);
        assert!(!clean.finish().infected);
    }
}
