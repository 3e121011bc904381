//! A private Postgres server for fault tests that stop the database: its own cluster in a
//! temporary directory on a free loopback port, so the shared test server is never touched.
//!
//! The binaries come from `AGENT_BOM_TEST_PG_BIN` or the newest `/usr/lib/postgresql/*/bin`.
//! Missing binaries fail the test with a message (CI has them): a skip would hide the fault
//! test. As root, the cluster runs as the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the directory of `initdb`, `pg_ctl` and `postgres`.
pub const PG_BIN_ENV: &str = "AGENT_BOM_TEST_PG_BIN";

/// A Postgres cluster of one test. Stopped (immediately) when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    /// Parent of the cluster, socket and log directories.
    root: tempfile::TempDir,
    port: u16,
    as_postgres_user: bool,
}

fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    // Newest major version last (directory names are the version numbers).
    found.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "the database outage test needs the PostgreSQL server binaries (initdb, pg_ctl, postgres): \
             none under /usr/lib/postgresql/*/bin. Install postgresql or set {PG_BIN_ENV}."
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    /// initdb a new cluster and start it.
    pub fn start() -> Self {
        let bin = find_bin();
        let root = tempfile::tempdir().expect("temp dir for the cluster");
        let as_postgres_user = is_root();
        for dir in ["data", "sock"] {
            std::fs::create_dir(root.path().join(dir)).expect("cluster dirs");
        }
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the cluster dir to postgres");
        }
        let pg = Self {
            bin,
            root,
            port: free_port(),
            as_postgres_user,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Run one of the server binaries, as `postgres` when we are root; panic on failure.
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.root.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (or restart) the server and wait until it accepts connections.
    pub fn start_again(&self) {
        let data = self.data_dir();
        let log = self.root.path().join("sock").join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path_str(&self.root.path().join("sock"))
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
            ],
        );
    }

    /// Stop the server at once, as a crash would (`pg_ctl stop -m immediate`): connections
    /// are cut, nothing is flushed gracefully.
    pub fn stop_immediate(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-m",
                "immediate",
                "-w",
                "-D",
                path_str(&self.data_dir()),
            ],
        );
    }

    /// URL of the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Best effort: the server may already be stopped.
        let exe = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .output();
    }
}
