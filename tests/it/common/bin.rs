//! The real binary, as a user runs it: one way to start it, signal it and collect what it
//! printed. [`Bin`] builds the command line; [`Bin::output`] runs it to its end;
//! [`Bin::spawn`] starts it and collects its standard output and error as they come, so a
//! test waits for a line it prints ([`Running::line`]) instead of sleeping, and signals it
//! with rustix ([`Running::signal`]) instead of running `kill`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// How a run ended.
#[derive(Debug)]
pub struct Output {
    /// The exit code (-1 when a signal ended it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `jellydemon` and its arguments, with `RUST_LOG` unset (the configuration's level rules).
pub struct Bin {
    cmd: tokio::process::Command,
    /// What its standard input reads (nothing when `None`).
    stdin: Option<Vec<u8>>,
}

impl Bin {
    /// The binary with no argument.
    pub fn new() -> Bin {
        Bin::via(None)
    }

    /// The binary started by `sh` after `setup` (e.g. `ulimit -n 256`, `umask 000`): a limit
    /// or mask the process inherits.
    pub fn after_shell(setup: &str) -> Bin {
        Bin::via(Some(setup))
    }

    fn via(setup: Option<&str>) -> Bin {
        let bin = env!("CARGO_BIN_EXE_jellydemon");
        let mut cmd = match setup {
            Some(s) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("{s} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        cmd.env_remove("RUST_LOG").kill_on_drop(true);
        Bin { cmd, stdin: None }
    }

    /// `--config PATH` and then `args`.
    pub fn with_config(path: &Path, args: &[&str]) -> Bin {
        Bin::new().arg("--config").arg(path).args(args)
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Bin {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Bin
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Bin {
        self.cmd.env(k, v);
        self
    }

    /// Its standard input reads `bytes`, then ends.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Bin {
        self.stdin = Some(bytes.into());
        self
    }

    /// Run it to its end.
    pub async fn output(self) -> Output {
        self.spawn().wait(Duration::from_secs(60)).await
    }

    /// Start it; what it prints is collected as it comes.
    pub fn spawn(mut self) -> Running {
        let stdin = match self.stdin {
            Some(_) => std::process::Stdio::piped(),
            None => std::process::Stdio::null(),
        };
        let mut child = self
            .cmd
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().unwrap();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // A binary that stops reading early closes the pipe: not this helper's error.
                let _ = pipe.write_all(&bytes).await;
            });
        }
        let printed = Arc::new(Printed::default());
        let readers = [
            collect(child.stdout.take().unwrap(), printed.clone(), false),
            collect(child.stderr.take().unwrap(), printed.clone(), true),
        ];
        Running {
            child,
            printed,
            readers,
        }
    }
}

/// What a running binary printed so far, and a wake-up for each new piece.
#[derive(Default)]
struct Printed {
    out: Mutex<(String, String)>,
    more: Notify,
}

fn collect(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    printed: Arc<Printed>,
    stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut o = printed.out.lock().unwrap();
                let text = String::from_utf8_lossy(&buf[..n]);
                if stderr {
                    o.1.push_str(&text);
                } else {
                    o.0.push_str(&text);
                }
            }
            printed.more.notify_waiters();
        }
        printed.more.notify_waiters();
    })
}

/// A started binary.
pub struct Running {
    child: tokio::process::Child,
    printed: Arc<Printed>,
    readers: [tokio::task::JoinHandle<()>; 2],
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Send it `sig` (SIGTERM, SIGINT, SIGHUP, SIGKILL, ...).
    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a pid");
        kill_process(pid, sig).expect("the signal is sent");
    }

    /// How many files it holds open now (its sockets among them).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Wait (at most 10 s) until it holds at least `n` open files: the connections a test
    /// made are in its hands, not in the kernel's backlog.
    pub async fn holding_files(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.open_files() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "it holds {} open files, never {n}",
                self.open_files()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What it wrote to its standard error so far.
    pub fn stderr(&self) -> String {
        self.printed.out.lock().unwrap().1.clone()
    }

    /// Wait (at most 10 s) for a line of its standard error that `pred` accepts, and return it.
    pub async fn line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Listening before looking, so a line printed in between is not missed.
            let mut more = std::pin::pin!(self.printed.more.notified());
            more.as_mut().enable();
            if let Some(l) = self.stderr().lines().find(|l| pred(l)) {
                return l.to_string();
            }
            if tokio::time::timeout_at(deadline, more).await.is_err() {
                panic!(
                    "never printed: {what}; its standard error:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Wait for it to end (at most `within`), with all it printed.
    pub async fn wait(mut self, within: Duration) -> Output {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}:\n{}", self.stderr()))
            .expect("waited for");
        for r in self.readers {
            let _ = r.await;
        }
        let (stdout, stderr) = self.printed.out.lock().unwrap().clone();
        Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}
