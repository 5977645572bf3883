//! What the commands write for the user: result files, checked before a run so that a bad
//! path does not lose it, and the table on stdout, which a closed pipe (`| head -1`) must not
//! turn into a panic or a failed run.

use std::io::Write as _;
use std::path::Path;

use crate::args::usage;

/// Checks that `path`, given as `flag`, can be written, without leaving a file behind.
///
/// # Errors
///
/// A [`UsageError`](crate::args::UsageError) naming the flag, the path and why.
pub(crate) fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| usage(format!("cannot write {flag} {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Prints `text` on stdout. A reader that went away (a broken pipe) is not an error: the run
/// itself succeeded.
///
/// # Errors
///
/// Any other failure to write.
pub(crate) fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_path_is_a_usage_error_and_a_good_one_leaves_nothing() {
        let err = check_writable("--json", Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(err.is::<crate::args::UsageError>());
        assert!(
            err.to_string()
                .starts_with("cannot write --json /nonexistent/x.json"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        check_writable("--json", &path).unwrap();
        assert!(!path.exists());
    }
}
