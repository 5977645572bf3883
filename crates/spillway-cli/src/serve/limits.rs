//! The process's open-files limit: every connection is a descriptor.

use rlimit::Resource;

/// Raises the open-files soft limit to the hard limit. Returns the soft limit before and after,
/// and the hard limit.
///
/// # Errors
///
/// When the limits cannot be read or set.
pub(crate) fn raise_open_files() -> std::io::Result<(u64, u64, u64)> {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    if soft < hard {
        rlimit::setrlimit(Resource::NOFILE, hard, hard)?;
    }
    let (after, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    Ok((soft, after, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit() {
        let (before, after, hard) = raise_open_files().unwrap();
        assert!(before <= after);
        assert_eq!(after, hard);
        assert_eq!(rlimit::getrlimit(Resource::NOFILE).unwrap().0, hard);
    }
}
