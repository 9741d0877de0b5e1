//! Running the real `consentry` binary against a fresh data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Cli {
    pub dir: tempfile::TempDir,
}

impl Cli {
    /// A fresh, initialised data directory.
    pub fn init() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli { dir };
        let out = cli.run(&["init", "--owner-key-file", cli.path("owner.key").to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        cli
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_consentry"));
        c.arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("CONSENTRY_MASTER_KEY")
            .env_remove("CONSENTRY_DATA_DIR")
            .env_remove("CONSENTRY_DATABASE_URL")
            .env_remove("CONSENTRY_DATABASE_POOL_SIZE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and asserts the exit code; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir().join("consentry.db")).unwrap()
    }

    pub fn import(&self, file: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "import",
            file.to_str().unwrap(),
            "--list",
            "newsletter",
            "--source",
            "signup form 2024",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Every file under a directory, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay` (bytes), in UTF-8 or UTF-16LE.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    if hay.windows(n.len()).any(|w| w == n) {
        return true;
    }
    let wide: Vec<u8> = needle.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    hay.windows(wide.len()).any(|w| w == wide.as_slice())
}
