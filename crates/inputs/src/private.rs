//! Store files that hold secrets or data others must not read.

use std::path::Path;

/// Creates `dir` (mode 0700 when this creates it) and the store file
/// `file` in it with mode 0600, and sets an existing store file to 0600:
/// a store holds secrets (the household's keys) or data others must not
/// read. Returns the file's path.
pub fn private_store_file(dir: &Path, file: &str) -> std::io::Result<std::path::PathBuf> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !existed {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // An empty file is what redb initialises as a new database.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = existed;
    Ok(path)
}
