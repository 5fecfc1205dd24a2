//! One bounded reader for every file the programs read: inputs, keys,
//! configurations and contexts. The size cap of each [`Kind`] is checked
//! while reading, never after, so `/dev/zero`, a FIFO or a huge file costs
//! at most the cap in memory and gets a clear error.

use std::io::Read;
use std::path::Path;

use thiserror::Error;

/// What a file is, and so how large it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node key (64 hex digits and a newline).
    Key,
    /// A core's configuration, or any small TOML file.
    Config,
    /// The edge's configuration, which lists every member's node id
    /// (about 100 bytes a member: 100,000 members fit with room).
    EdgeConfig,
    /// Meter data, prices, community files.
    Data,
}

impl Kind {
    /// The largest size accepted, in bytes.
    pub fn cap(self) -> usize {
        match self {
            Kind::Key => 256,
            Kind::Config => 1 << 20,
            Kind::EdgeConfig => 64 << 20,
            Kind::Data => crate::MAX_INPUT,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Key => "a key file",
            Kind::Config => "a configuration file",
            Kind::EdgeConfig => "the edge's configuration",
            Kind::Data => "an input file",
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file as given.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Larger than its kind allows.
    #[error("{path}: {size} than the {cap} bytes {what} may have")]
    TooLarge {
        /// The file as given.
        path: String,
        /// "N bytes, more" or "more" when the size is unknown.
        size: String,
        /// The cap.
        cap: usize,
        /// What the file is.
        what: &'static str,
    },
    /// Not UTF-8 text.
    #[error("{path}: not UTF-8 text (byte {at})")]
    NotText {
        /// The file as given.
        path: String,
        /// Offset of the first bad byte.
        at: usize,
    },
}

/// Reads at most `kind.cap()` bytes of `path`, refusing a larger file
/// (regular or not) before holding more than the cap in memory.
pub fn bounded(path: &Path, kind: Kind) -> Result<Vec<u8>, ReadError> {
    let shown = || path.display().to_string();
    let io = |source| ReadError::Io {
        path: shown(),
        source,
    };
    let cap = kind.cap();
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory, not a file")));
    }
    let too_large = |size: String| ReadError::TooLarge {
        path: shown(),
        size,
        cap,
        what: kind.name(),
    };
    if meta.is_file() && meta.len() > cap as u64 {
        return Err(too_large(format!("{} bytes, more", meta.len())));
    }
    // Reserve once (pages are only touched as they are read), so that the
    // buffer never doubles past the cap while reading a device or a pipe.
    let expected = if meta.is_file() {
        meta.len() as usize + 1
    } else {
        cap + 1
    };
    let mut buf = Vec::with_capacity(expected.min(cap + 1));
    file.take(cap as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() > cap {
        return Err(too_large("more".into()));
    }
    Ok(buf)
}

/// [`bounded`], as UTF-8 text.
pub fn bounded_text(path: &Path, kind: Kind) -> Result<String, ReadError> {
    String::from_utf8(bounded(path, kind)?).map_err(|e| ReadError::NotText {
        path: path.display().to_string(),
        at: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_for_files_devices_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("k");
        std::fs::write(&small, "ab\n").unwrap();
        assert_eq!(bounded_text(&small, Kind::Key).unwrap(), "ab\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 257]).unwrap();
        let e = bounded(&big, Kind::Key).unwrap_err().to_string();
        assert!(
            e.ends_with("257 bytes, more than the 256 bytes a key file may have"),
            "{e}"
        );
        let e = bounded(Path::new("/dev/zero"), Kind::Config)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/dev/zero: more than the 1048576 bytes a configuration file may have"
        );
        assert!(
            bounded(dir.path(), Kind::Data)
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [b'a', 0xff]).unwrap();
        assert!(matches!(
            bounded_text(&bad, Kind::Data),
            Err(ReadError::NotText { at: 1, .. })
        ));
        assert!(matches!(
            bounded(&dir.path().join("none"), Kind::Data),
            Err(ReadError::Io { .. })
        ));
    }
}
