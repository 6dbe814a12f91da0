//! `total_upload_mbps = "sqm"`: the link's capacity is the upload rate the router already
//! shapes to:
//! * with the `openwrt` meter, from OpenWrt's SQM (`/etc/config/sqm`) through rpcd with the
//!   meter's login: `uci get {"config": "sqm"}`, then the enabled `queue` section on the WAN
//!   device (the one named by the interface's `l3_device`, or the only enabled one), its
//!   `upload` in kbit/s;
//! * with the `interface` meter (jellydemon on the gateway), from the `cake` qdisc of its
//!   device: `tc qdisc show dev <device>`, its `bandwidth` (iproute2 prints rates as
//!   `40Mbit`, `12500Kbit`, 1000-based, or `Mibit` with `-iec`).
//!
//! It is read before anything plans (`jellydemon run`, `reconcile`, `check`; a failure is an
//! error that says why) and again every `bandwidth.meter.sqm_interval` by the budget feed
//! (`src/adapters/budget/feed.rs`), which follows a change.

use serde_json::Value;

use super::meter::{Meter, Openwrt};
use crate::config::{ConfigError, MeterKind, Settings, Sqm, invalid};

/// The upload rate (kbit/s) of the SQM queue for `device`, and which queue: the enabled
/// `queue` sections of `values` (rpcd's `uci get` answer), the one on `device` when several
/// are enabled.
pub fn pick(values: &Value, device: Option<&str>) -> Result<(u64, String), String> {
    let sections = values
        .get("values")
        .and_then(Value::as_object)
        .ok_or("the sqm configuration has no sections (is the sqm-scripts package installed?)")?;
    let enabled: Vec<(&String, &Value)> = sections
        .iter()
        .filter(|(_, v)| v.get(".type").and_then(Value::as_str) == Some("queue"))
        .filter(|(_, v)| v.get("enabled").and_then(Value::as_str) == Some("1"))
        .collect();
    let on_device: Vec<&(&String, &Value)> = enabled
        .iter()
        .filter(|(_, v)| device.is_some() && v.get("interface").and_then(Value::as_str) == device)
        .collect();
    let (name, q) = match (on_device.as_slice(), enabled.as_slice()) {
        ([one], _) => **one,
        (_, [one]) => *one,
        (_, []) => return Err("no SQM queue is enabled (Network -> SQM QoS)".into()),
        _ => {
            return Err(format!(
                "{} SQM queues are enabled and none is on the WAN device {}: set \
                 total_upload_mbps to the link's rate",
                enabled.len(),
                device.unwrap_or("?")
            ));
        }
    };
    let upload = q
        .get("upload")
        .and_then(|u| match u {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            v => v.as_u64(),
        })
        .filter(|u| *u > 0)
        .ok_or_else(|| format!("the SQM queue {name} has no upload rate (0 means unshaped)"))?;
    let iface = q.get("interface").and_then(Value::as_str).unwrap_or("?");
    Ok((
        upload,
        format!(
            "SQM queue {} on {}",
            crate::escape::escape_controls(name),
            crate::escape::escape_controls(iface)
        ),
    ))
}

/// The shaping rate of the `cake` qdisc in `tc qdisc show` output, in Mbps, and where it was
/// read.
pub fn parse_cake(output: &str, device: &str) -> Result<(f64, String), String> {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("qdisc cake "))
        .ok_or_else(|| format!("no cake qdisc on {device} (tc qdisc show dev {device})"))?;
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "bandwidth")
        .ok_or_else(|| format!("the cake qdisc on {device} names no bandwidth"))?;
    let rate = words.next().unwrap_or("");
    if rate == "unlimited" {
        return Err(format!(
            "the cake qdisc on {device} does not shape (bandwidth unlimited)"
        ));
    }
    let split = rate
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rate.len());
    let (number, unit) = rate.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("cannot read the cake bandwidth {rate:?} on {device}"))?;
    let bits = match unit {
        "bit" => 1.0,
        "Kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        "Tbit" => 1e12,
        "Kibit" => 1024.0,
        "Mibit" => 1024.0 * 1024.0,
        "Gibit" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "cannot read the cake bandwidth {rate:?} on {device}"
            ));
        }
    };
    Ok((n * bits / 1e6, format!("cake qdisc on {device}")))
}

/// Read the `cake` qdisc of `device` with `tc` (iproute2) within `timeout`.
pub async fn read_cake(
    device: &str,
    timeout: std::time::Duration,
) -> Result<(f64, String), String> {
    let run = tokio::process::Command::new("tc")
        .args(["qdisc", "show", "dev", device])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| "tc did not answer in time".to_string())?
        .map_err(|e| format!("cannot run tc (iproute2) to read the cake qdisc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tc qdisc show dev {device} failed: {}",
            crate::escape::escape_controls(String::from_utf8_lossy(&out.stderr).trim())
        ));
    }
    parse_cake(&String::from_utf8_lossy(&out.stdout), device)
}

/// Read the shaping rate through the configured meter: Mbps, and what was read.
pub async fn read_meter(
    meter: &mut Meter,
    timeout: std::time::Duration,
) -> Result<(f64, String), String> {
    match meter {
        Meter::Openwrt(o) => tokio::time::timeout(timeout, read(o))
            .await
            .unwrap_or_else(|_| Err("no answer in time".into())),
        Meter::Interface(i) => read_cake(i.device(), timeout).await,
        Meter::Snmp(_) => Err("\"sqm\" needs the openwrt or the interface meter".into()),
    }
}

/// Read SQM's upload rate through the `openwrt` meter: Mbps, and which queue.
pub async fn read(meter: &mut Openwrt) -> Result<(f64, String), String> {
    let (device, values) = meter.sqm_config().await?;
    let (kbit, queue) = pick(&values, device.as_deref())?;
    Ok((kbit as f64 / 1000.0, queue))
}

/// With `total_upload_mbps = "sqm"`, read the capacity now and put it in `settings`; a
/// number in the file is left as it is.
pub async fn resolve(settings: &mut Settings) -> Result<(), ConfigError> {
    if settings.bandwidth.sqm == Sqm::Off {
        return Ok(());
    }
    let key = "bandwidth.total_upload_mbps";
    let m = settings
        .bandwidth
        .meter
        .as_ref()
        .filter(|m| matches!(m.kind(), MeterKind::Openwrt | MeterKind::Interface))
        .ok_or_else(|| {
            invalid(
                key,
                "\"sqm\" needs [bandwidth.meter] kind = \"openwrt\" or \"interface\"",
            )
        })?;
    let mut meter = Meter::new(m)?;
    let (mbps, queue) = read_meter(&mut meter, m.timeout.saturating_mul(3))
        .await
        .map_err(|e| {
            invalid(
                key,
                format!("\"sqm\": cannot read the router's SQM queue: {e}"),
            )
        })?;
    tracing::info!("upload capacity {mbps} Mbps, from the router's {queue}");
    settings.set_sqm_capacity(mbps, queue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(queues: Value) -> Value {
        json!({ "values": queues })
    }

    #[test]
    fn the_enabled_queue_on_the_wan_device_gives_the_rate() {
        let v = config(json!({
            "eth1": {".type": "queue", "enabled": "1", "interface": "pppoe-wan", "upload": "38000", "download": "250000"},
            "lan": {".type": "queue", "enabled": "0", "interface": "br-lan", "upload": "1000"},
        }));
        assert_eq!(
            pick(&v, Some("pppoe-wan")).unwrap(),
            (38_000, "SQM queue eth1 on pppoe-wan".into())
        );
        // The only enabled queue, whatever its device is called.
        assert_eq!(pick(&v, Some("wan")).unwrap().0, 38_000);
    }

    #[test]
    fn several_none_or_an_unshaped_queue_say_what_to_do() {
        let two = config(json!({
            "a": {".type": "queue", "enabled": "1", "interface": "eth0", "upload": "1000"},
            "b": {".type": "queue", "enabled": "1", "interface": "eth2", "upload": "2000"},
        }));
        assert!(
            pick(&two, Some("pppoe-wan"))
                .unwrap_err()
                .contains("2 SQM queues")
        );
        assert_eq!(pick(&two, Some("eth2")).unwrap().0, 2000);
        let none = config(json!({"a": {".type": "queue", "enabled": "0", "upload": "1000"}}));
        assert!(
            pick(&none, None)
                .unwrap_err()
                .contains("no SQM queue is enabled")
        );
        let zero = config(json!({"a": {".type": "queue", "enabled": "1", "upload": "0"}}));
        assert!(pick(&zero, None).unwrap_err().contains("no upload rate"));
        assert!(pick(&json!({}), None).unwrap_err().contains("no sections"));
    }

    #[test]
    fn the_cake_qdisc_gives_its_bandwidth() {
        let out = "qdisc cake 8001: root refcnt 2 bandwidth 40Mbit diffserv3 triple-isolate \
                   nonat nowash no-ack-filter split-gso rtt 100ms raw overhead 0 \n\
                   qdisc ingress ffff: parent ffff:fff1 ----------------\n";
        assert_eq!(
            parse_cake(out, "eth0").unwrap(),
            (40.0, "cake qdisc on eth0".into())
        );
        for (rate, mbps) in [
            ("12500Kbit", 12.5),
            ("1.5Gbit", 1500.0),
            ("40Mibit", 41.943_04),
        ] {
            let line = format!("qdisc cake 1: root refcnt 2 bandwidth {rate} besteffort");
            let got = parse_cake(&line, "eth0").unwrap().0;
            assert!((got - mbps).abs() < 1e-6, "{rate}: {got}");
        }
        let unlimited = "qdisc cake 1: root refcnt 2 bandwidth unlimited diffserv3";
        assert!(
            parse_cake(unlimited, "eth0")
                .unwrap_err()
                .contains("does not shape")
        );
        let fq = "qdisc fq_codel 0: root refcnt 2 limit 10240p flows 1024";
        assert!(
            parse_cake(fq, "eth0")
                .unwrap_err()
                .contains("no cake qdisc on eth0")
        );
    }
}
