//! The configuration file `init` writes: the answers, each with a line saying what it is.

use crate::config::toml_string as toml_str;

use super::Answers;

/// The configuration file: the answers, each with a line saying what it is.
pub fn render(a: &Answers) -> String {
    let reserved = (a.upload_mbps * 0.1 * 10.0).round() / 10.0;
    let mut out = format!(
        r#"# jellydemon configuration, written by `jellydemon init`. Every key is described in
# config.example.toml (in the source); any key can also be set in the environment as
# JELLYDEMON_SECTION__KEY, e.g. JELLYDEMON_BANDWIDTH__TOTAL_UPLOAD_MBPS=50.

[jellyfin]
# {server}
url = {url}
# The API key, in a file of its own (a relative path is relative to this file's folder).
api_key_file = "api_key"

[network]
# Who is local: Jellyfin's own LAN networks (Dashboard -> Networking), read at every pass.
internal_ranges = "jellyfin"

[bandwidth]
# The upload speed of the link, and what to keep free for everything else in the house.
total_upload_mbps = {upload}
reserved_mbps = {reserved}
# equal, priority (weights per user) or demand (by what each stream needs).
algorithm = "equal"

[daemon]
"#,
        server = a.server,
        url = toml_str(&a.url),
        upload = a.upload_mbps,
    );
    if a.webhooks {
        out.push_str(&format!(
            r#"# The Jellyfin Webhook plugin calls http://<this machine>:{port}/hook with the secret in
# webhook_token (see webhook-templates/README.md in the source).
mode = "webhook"
listen = {listen}
"#,
            port = a.listen.port(),
            listen = toml_str(&a.listen.to_string()),
        ));
    } else {
        out.push_str(&format!(
            r#"# No webhooks: jellydemon polls Jellyfin every 30 s instead.
mode = "reconcile-only"
# The status page and /healthz.
listen = {listen}
"#,
            listen = toml_str(&a.listen.to_string()),
        ));
    }
    out.push_str(
        "# The webhook secret; off loopback, the status page asks for it too.\n\
         webhook_token_file = \"webhook_token\"\n",
    );
    if let Some(t) = &a.torrent {
        out.push_str(&format!(
            "\n# The torrent client seeding on this link: it gets what the remote streams leave,\n\
             # and its own settings are put back on stop.\n[[downloader]]\nkind = \"{}\"\nurl = {}\n",
            t.kind.as_str(),
            toml_str(&t.url)
        ));
        if let Some(u) = &t.username {
            out.push_str(&format!(
                "username = {}\npassword_file = \"{}_password\"\n",
                toml_str(u),
                t.kind.as_str()
            ));
        }
    }
    if let Some((url, _)) = &a.plex {
        out.push_str(&format!(
            "\n# The Plex server streaming on this link: one claimant beside the users, its share\n\
             # set as its total upload limit outside the house (put back at the stop; false: leave\n\
             # Plex's settings alone and take what it streams off the budget). Its token is in\n\
             # plex_token.\n[[server]]\nkind = \"plex\"\nurl = {}\ntoken_file = \"plex_token\"\n\
             manage_wan_total = true\n",
            toml_str(url)
        ));
    }
    if let Some(m) = &a.member {
        out.push_str(&format!(
            "\n# Another server streaming on this link ({}): its remote users share the budget\n\
             # with this one's, named user@{}. Its API key is in {}_api_key.\n[[server]]\n\
             kind = \"{}\"\nurl = {}\napi_key_file = \"{}_api_key\"\n",
            m.server,
            m.kind.as_str(),
            m.kind.as_str(),
            m.kind.as_str(),
            toml_str(&m.url),
            m.kind.as_str()
        ));
    }
    if let Some(state) = &a.state_file {
        out.push_str(&format!(
            "\n[state]\n# Every user's original limit, to put back.\nfile = {}\n",
            toml_str(&state.display().to_string())
        ));
    }
    out
}
