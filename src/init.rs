//! `jellydemon init`: a first configuration. It asks only for what jellydemon cannot read
//! itself (where Jellyfin is, an API key, the upload speed, whether the Webhook plugin will
//! call); the LAN's networks come from Jellyfin at every pass. Each answer is checked (the URL
//! answers as Jellyfin, the key is valid and an administrator's) before anything is written.
//!
//! It writes `config.toml`, the key to `api_key` beside it (owner-only, named by a relative
//! `api_key_file`, so the same folder works on the host, under systemd and mounted in a
//! container) and a generated secret to `webhook_token`: the webhook secret, and the status
//! page's off loopback. It is written with or without webhooks, so that the same folder serves
//! the systemd unit (which hands both files to the service) and turning webhooks on later is
//! one line. It never overwrites without `--force`, and ends by running `check`.
//!
//! Every question has a flag, so it runs without a terminal; answers can also come as lines on
//! standard input. A question without an answer is an error naming its flag.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::adapters::jellyfin::{Client, ErrorKind};
use crate::folder::Folder;

mod neighbours;
mod render;

use neighbours::{member, plex, torrent};
pub use render::render;

/// What the command line already answers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where `config.toml` goes; the key files go beside it.
    pub config: PathBuf,
    /// `--url`.
    pub url: Option<String>,
    /// `--api-key-file`: read the key from this file instead of asking.
    pub api_key_file: Option<PathBuf>,
    /// `--upload-mbps`.
    pub upload_mbps: Option<f64>,
    /// `--webhooks` / `--no-webhooks`.
    pub webhooks: Option<bool>,
    /// `--listen`; default: loopback when Jellyfin is on this machine, else all interfaces.
    pub listen: Option<SocketAddr>,
    /// `--state-file`.
    pub state_file: Option<PathBuf>,
    /// `--torrent`: `none`, `qbittorrent` or `transmission`.
    pub torrent: Option<String>,
    /// `--torrent-url`.
    pub torrent_url: Option<String>,
    /// `--torrent-username` (empty: no login).
    pub torrent_username: Option<String>,
    /// `--torrent-password-file`.
    pub torrent_password_file: Option<PathBuf>,
    /// `--plex-url` (`none`: no Plex).
    pub plex_url: Option<String>,
    /// `--plex-token-file`.
    pub plex_token_file: Option<PathBuf>,
    /// `--server-url`: another Jellyfin or Emby server (`none`: none).
    pub server_url: Option<String>,
    /// `--server-api-key-file`.
    pub server_api_key_file: Option<PathBuf>,
    /// Overwrite existing files.
    pub force: bool,
}

/// Why `init` stopped; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file it would write exists, or the folder could not be written.
    #[error(transparent)]
    Folder(#[from] crate::folder::FolderError),
    /// A question got no answer (standard input ended).
    #[error("no answer for {question} (pass {flag})")]
    NoAnswer {
        /// The question.
        question: &'static str,
        /// The flag that answers it.
        flag: &'static str,
    },
    /// An answer given as a flag is wrong, or Jellyfin refuses it.
    #[error("{0}")]
    Rejected(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// Questions and answers: a terminal (the key is read without echo) or lines on standard input.
pub struct Prompt<R, W> {
    input: R,
    out: W,
    terminal: bool,
}

impl Prompt<std::io::StdinLock<'static>, std::io::Stderr> {
    /// Standard input, with the questions on standard error (standard output is the report).
    pub fn stdio() -> Self {
        Prompt {
            terminal: std::io::stdin().is_terminal(),
            input: std::io::stdin().lock(),
            out: std::io::stderr(),
        }
    }
}

impl<R: BufRead, W: Write> Prompt<R, W> {
    /// Answers as lines of `input` (for tests), questions to `out`.
    pub fn lines(input: R, out: W) -> Self {
        Prompt {
            input,
            out,
            terminal: false,
        }
    }

    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    /// An optional question the `flag` may answer: the flag's value, else the answer (the
    /// default when empty); `None` when the input ends here (a script that answered the rest
    /// with flags means none).
    fn flag_or_ask(
        &mut self,
        flag: &Option<String>,
        question: &str,
        default: &str,
    ) -> Option<String> {
        match flag {
            Some(v) => Some(v.clone()),
            None => self.ask(question, Some(default)),
        }
    }

    /// One answer, trimmed; the default when the answer is empty; `None` at the end of input.
    fn ask(&mut self, question: &str, default: Option<&str>) -> Option<String> {
        match default {
            Some(d) => {
                let _ = write!(self.out, "{question} [{d}]: ");
            }
            None => {
                let _ = write!(self.out, "{question}: ");
            }
        }
        let _ = self.out.flush();
        let line = self.read_line(false)?;
        let answer = line.trim();
        Some(match (answer.is_empty(), default) {
            (true, Some(d)) => d.to_string(),
            _ => answer.to_string(),
        })
    }

    /// A secret: not echoed on a terminal.
    fn ask_secret(&mut self, question: &str) -> Option<SecretString> {
        let _ = write!(self.out, "{question}: ");
        let _ = self.out.flush();
        let line = self.read_line(true)?;
        if self.terminal {
            let _ = writeln!(self.out);
        }
        Some(SecretString::from(line.trim().to_string()))
    }

    fn read_line(&mut self, secret: bool) -> Option<String> {
        let echo = (secret && self.terminal).then(no_echo);
        let mut line = String::new();
        let read = self.input.read_line(&mut line);
        if let Some(Some(saved)) = echo {
            restore_echo(saved);
        }
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }
}

/// Turn the terminal's echo off; the settings to restore, if it could.
fn no_echo() -> Option<rustix::termios::Termios> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).ok()?;
    Some(saved)
}

fn restore_echo(saved: rustix::termios::Termios) {
    let _ = rustix::termios::tcsetattr(
        std::io::stdin(),
        rustix::termios::OptionalActions::Now,
        &saved,
    );
}

/// What `init` settled on.
#[derive(Debug)]
pub struct Answers {
    /// Jellyfin's URL, as it answered.
    pub url: String,
    /// Its server name and version, for the summary.
    pub server: String,
    /// The API key.
    pub key: SecretString,
    /// The link's upload speed.
    pub upload_mbps: f64,
    /// Whether the Webhook plugin will call.
    pub webhooks: bool,
    /// Where the daemon listens.
    pub listen: SocketAddr,
    /// `state.file`, when not the default.
    pub state_file: Option<PathBuf>,
    /// The torrent client seeding on the link, if any.
    pub torrent: Option<Torrent>,
    /// A Plex server streaming on the link, if any: its URL and token (written to
    /// `plex_token` beside the configuration).
    pub plex: Option<(String, SecretString)>,
    /// Another Jellyfin or Emby server streaming on the link, if any (its key written to
    /// `<kind>_api_key` beside the configuration).
    pub member: Option<Member>,
}

/// Another Jellyfin or Emby server `init` was told about.
#[derive(Debug)]
pub struct Member {
    /// `jellyfin` or `emby`.
    pub kind: crate::config::ServerKind,
    /// Its URL, with Emby's `/emby` when it answers there.
    pub url: String,
    /// Its name and version, for the summary.
    pub server: String,
    /// An administrator's API key.
    pub key: SecretString,
}

/// A torrent client `init` was told about.
#[derive(Debug)]
pub struct Torrent {
    /// `qbittorrent` or `transmission`.
    pub kind: crate::config::DownloaderKind,
    /// Its WebUI or RPC URL.
    pub url: String,
    /// Its login, if it asks for one.
    pub username: Option<String>,
    /// The password (written to `<kind>_password` beside the configuration).
    pub password: Option<SecretString>,
}

/// The files `init` wrote.
#[derive(Debug)]
pub struct Written {
    /// What was settled.
    pub answers: Answers,
    /// `config.toml`.
    pub config: PathBuf,
    /// The key file.
    pub api_key: PathBuf,
    /// The webhook secret's file.
    pub webhook_token: PathBuf,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8096";

/// Ask, check, write. Nothing is written unless every answer holds.
pub async fn run<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<Written, InitError> {
    let folder = Folder::of(&opts.config);
    folder.check_free(opts.force)?;

    let (url, server) = jellyfin_url(opts, prompt).await?;
    let key = api_key(opts, prompt, &url).await?;
    let upload_mbps = upload(opts, prompt)?;
    let webhooks = match opts.webhooks {
        Some(w) => w,
        None => loop {
            let a = prompt
                .ask(
                    "Will the Jellyfin Webhook plugin call jellydemon (instant reactions)? y/n",
                    Some("y"),
                )
                .ok_or(InitError::NoAnswer {
                    question: "whether to use webhooks",
                    flag: "--webhooks or --no-webhooks",
                })?;
            match a.to_ascii_lowercase().as_str() {
                "y" | "yes" => break true,
                "n" | "no" => break false,
                _ => prompt.say("  answer y or n"),
            }
        },
    };
    let listen = opts
        .listen
        .unwrap_or_else(|| default_listen(&url, webhooks));
    let torrent = torrent(opts, prompt).await?;
    let plex = plex(opts, prompt).await?;
    let member = member(opts, prompt).await?;
    let answers = Answers {
        url,
        server,
        key,
        upload_mbps,
        webhooks,
        listen,
        state_file: opts.state_file.clone(),
        torrent,
        plex,
        member,
    };

    let mut secrets = Vec::new();
    if let Some(Torrent {
        kind,
        password: Some(p),
        ..
    }) = &answers.torrent
    {
        secrets.push((format!("{}_password", kind.as_str()), p));
    }
    if let Some((_, token)) = &answers.plex {
        secrets.push(("plex_token".to_string(), token));
    }
    if let Some(m) = &answers.member {
        secrets.push((format!("{}_api_key", m.kind.as_str()), &m.key));
    }
    // The webhook secret is written whether webhooks are used or not: it also guards the
    // status page off loopback.
    folder.write(&answers.key, &secrets, &render(&answers))?;
    Ok(Written {
        config: folder.config.clone(),
        api_key: folder.api_key(),
        webhook_token: folder.webhook_token(),
        answers,
    })
}

/// `/System/Info/Public` of whatever answers at `url`.
async fn public_info(url: &str) -> Result<crate::adapters::jellyfin::PublicSystemInfo, String> {
    let client = Client::new(
        url,
        &SecretString::from(String::new()),
        Duration::from_secs(5),
    )
    .map_err(|e| e.to_string())?;
    client.public_info().await.map_err(|e| e.to_string())
}

/// The URL, from the flag or asked (offering the local default when it answers); it must
/// answer as Jellyfin.
async fn jellyfin_url<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<(String, String), InitError> {
    if let Some(url) = &opts.url {
        return probe(url).await.map_err(InitError::Rejected);
    }
    let default = probe(DEFAULT_URL).await.ok().map(|_| DEFAULT_URL);
    loop {
        let url = prompt
            .ask("Jellyfin URL (with its base path, if any)", default)
            .ok_or(InitError::NoAnswer {
                question: "the Jellyfin URL",
                flag: "--url",
            })?;
        if url.is_empty() {
            continue;
        }
        match probe(&url).await {
            Ok(found) => return Ok(found),
            Err(e) => prompt.say(&format!("  {e}")),
        }
    }
}

/// `host:port` as `http://host:port`: a URL typed without its scheme means plain HTTP.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// The URL as it will be written (no trailing slash) and "name, version" when it answers as
/// Jellyfin.
async fn probe(url: &str) -> Result<(String, String), String> {
    let url = with_scheme(url.trim().trim_end_matches('/'));
    let parsed = url::Url::parse(&url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: use http:// or https://"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not hold a user name or password".to_string());
    }
    let client = Client::new(
        &url,
        &SecretString::from(String::new()),
        Duration::from_secs(5),
    )
    .map_err(|e| e.to_string())?;
    let info = client.public_info().await.map_err(|e| match e.kind {
        ErrorKind::Connect | ErrorKind::Dns | ErrorKind::Tls | ErrorKind::Timeout => {
            format!("{url} does not answer: {e}")
        }
        _ => format!(
            "{url} answers, but not as Jellyfin (a base path such as /jellyfin missing or \
             extra?): {e}"
        ),
    })?;
    let server = format!(
        "{} {}",
        info.server_name.as_deref().unwrap_or("Jellyfin"),
        info.version.as_deref().unwrap_or("(version unknown)")
    );
    Ok((url, server))
}

/// The key, from the file or asked; it must be valid and an administrator's.
async fn api_key<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
    url: &str,
) -> Result<SecretString, InitError> {
    if let Some(path) = &opts.api_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InitError::Io(format!("cannot read {}: {e}", path.display())))?;
        let key = SecretString::from(text.trim().to_string());
        return verify_key(url, &key)
            .await
            .map(|()| key)
            .map_err(InitError::Rejected);
    }
    loop {
        let key = prompt
            .ask_secret("API key (in Jellyfin: Dashboard -> API Keys -> +)")
            .ok_or(InitError::NoAnswer {
                question: "the API key",
                flag: "--api-key-file",
            })?;
        if key.expose_secret().is_empty() {
            continue;
        }
        match verify_key(url, &key).await {
            Ok(()) => return Ok(key),
            Err(e) => prompt.say(&format!("  {e}")),
        }
    }
}

async fn verify_key(url: &str, key: &SecretString) -> Result<(), String> {
    if key.expose_secret().is_empty() {
        return Err("the API key is empty".to_string());
    }
    let client = Client::new(url, key, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    client.system_info().await.map_err(|e| match e.kind {
        ErrorKind::Unauthorized => "Jellyfin refused the API key (401): copy it again from \
                                    Dashboard -> API Keys"
            .to_string(),
        _ => format!("cannot check the API key: {e}"),
    })?;
    client.check_admin().await.map_err(|e| match e.kind {
        ErrorKind::Forbidden => "this key is not an administrator's (403): create one under \
                                 Dashboard -> API Keys"
            .to_string(),
        _ => format!("cannot check the API key's rights: {e}"),
    })
}

fn upload<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<f64, InitError> {
    let valid = |v: f64| v.is_finite() && v > 0.0 && v < 1_000_000.0;
    if let Some(v) = opts.upload_mbps {
        return if valid(v) {
            Ok(v)
        } else {
            Err(InitError::Rejected(format!(
                "--upload-mbps must be a number of Mbps > 0, got {v}"
            )))
        };
    }
    loop {
        let a = prompt
            .ask(
                "Upload speed of your internet link, in Mbps (a speed test's upload figure)",
                None,
            )
            .ok_or(InitError::NoAnswer {
                question: "the upload speed",
                flag: "--upload-mbps",
            })?;
        match a.trim_end_matches("Mbps").trim().parse::<f64>() {
            Ok(v) if valid(v) => return Ok(v),
            _ => prompt.say("  a number of Mbps, e.g. 40"),
        }
    }
}

/// Loopback when Jellyfin is on this machine (its webhook comes from here too) or nothing will
/// call; all interfaces when the Webhook plugin calls from another machine or a container.
fn default_listen(url: &str, webhooks: bool) -> SocketAddr {
    let local = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    if webhooks && !local {
        ([0, 0, 0, 0], 8098).into()
    } else {
        ([127, 0, 0, 1], 8098).into()
    }
}

#[cfg(test)]
mod tests;
