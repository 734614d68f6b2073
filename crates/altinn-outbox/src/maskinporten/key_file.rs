//! Who else may read the key file. A private key that other users of the host can read is as
//! good as leaked, so `check` refuses such a file and the daemon warns about it at start-up.
//!
//! Under systemd the key arrives through `LoadCredential=`: systemd copies it into the
//! credentials directory as a root-owned file of mode 0400 and gives the service's user read
//! access with an ACL entry (or, where the file system has no ACLs, makes the user the owner).
//! With an ACL, the group bits of the mode show the ACL's mask, not a grant to a group, so that
//! file reads as 0440 although only root and the service's user may read it. The directory
//! itself is private to the service and read-only. There, and only there, the group read bit
//! is therefore accepted; group write and any access for others never are.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Permission bits of the group and of others: a private key file has none of them.
const GROUP_OR_OTHERS: u32 = 0o077;
/// The group read bit, which in the credentials directory is the ACL mask (see above).
const CREDENTIAL_ACL_MASK_READ: u32 = 0o040;

/// A key file the group or others may read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "maskinporten key file {} has mode {mode:04o}: its group or other users may read or write it; \
     make it readable by its owner only: chmod 600 {}",
    path.display(),
    path.display()
)]
pub struct OpenKeyFile {
    pub path: PathBuf,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Checks the permissions of the key file at `path`; `credentials_dir` is systemd's
/// `$CREDENTIALS_DIRECTORY`, if the process has one. A file that cannot be examined passes:
/// loading the key reports why it cannot be read.
pub fn check_permissions(path: &Path, credentials_dir: Option<&Path>) -> Result<(), OpenKeyFile> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = metadata.permissions().mode() & 0o7777;
    let is_credential = credentials_dir.is_some_and(|dir| path.parent() == Some(dir));
    let allowed = if is_credential { CREDENTIAL_ACL_MASK_READ } else { 0 };
    if mode & GROUP_OR_OTHERS & !allowed == 0 {
        Ok(())
    } else {
        Err(OpenKeyFile { path: path.to_path_buf(), mode })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("key-{mode:o}.json"));
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_key_only_its_owner_may_read_passes() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400] {
            assert_eq!(check_permissions(&key_with_mode(dir.path(), mode), None), Ok(()), "{mode:o}");
        }
    }

    #[test]
    fn a_key_the_group_or_others_may_read_or_write_is_refused_naming_file_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o440] {
            let path = key_with_mode(dir.path(), mode);
            let open = check_permissions(&path, None).unwrap_err();
            assert_eq!(open, OpenKeyFile { path: path.clone(), mode });
            let text = open.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("mode 0{mode:o}")), "{text}");
            assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
        }
    }

    #[test]
    fn in_the_credentials_directory_the_acl_mask_may_show_as_group_read() {
        let credentials = tempfile::tempdir().unwrap();
        for mode in [0o440, 0o400] {
            let path = key_with_mode(credentials.path(), mode);
            assert_eq!(check_permissions(&path, Some(credentials.path())), Ok(()), "{mode:o}");
        }
        for mode in [0o460, 0o444, 0o404] {
            let path = key_with_mode(credentials.path(), mode);
            assert!(check_permissions(&path, Some(credentials.path())).is_err(), "{mode:o}");
        }
        let elsewhere = tempfile::tempdir().unwrap();
        let path = key_with_mode(elsewhere.path(), 0o440);
        assert!(check_permissions(&path, Some(credentials.path())).is_err(), "only in the credentials directory");
    }

    #[test]
    fn a_missing_file_is_left_to_the_key_loader() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_permissions(&dir.path().join("missing.json"), None), Ok(()));
    }
}
