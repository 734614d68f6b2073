//! The fake's blob storage: uploaded bytes are reduced, as they stream in, to what tests and
//! the rules need (size, MD5, a bounded prefix, the malware verdict), so a 60 MB upload costs
//! one chunk of memory, not 60 MB.
//!
//! Altinn's checksums are MD5 as 32 lower-case hex characters; the `md-5` crate computes them
//! (the daemon itself asks PostgreSQL's `md5()`, so the two sides do not share the code).

use md5::{Digest, Md5};

/// The EICAR test string: every virus scanner, Defender included, reports a file containing
/// it as infected, so tests can trigger the malware path with a harmless file.
pub(crate) const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!H+H*";

/// Bytes kept per file for assertions; larger files keep only their size and MD5.
pub(crate) const KEPT_BYTES: usize = 1_000_000;

/// The digest as 32 lower-case hex characters, the form Altinn compares checksums in.
fn hex(md5: Md5) -> String {
    format!("{:x}", md5.finalize())
}

/// MD5 of a whole buffer as lower-case hex.
pub fn md5_hex(data: &[u8]) -> String {
    hex(Md5::new_with_prefix(data))
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
            md5: hex(self.md5),
            bytes: (!self.overflowed).then_some(self.kept),
            infected: self.infected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_lower_case_hex() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
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
