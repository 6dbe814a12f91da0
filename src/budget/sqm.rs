//! `total_upload_mbps = "sqm"`: the link's capacity is the upload rate the router already
//! shapes to, read from OpenWrt's SQM (`/etc/config/sqm`) through rpcd with the `openwrt`
//! meter's login: `uci get {"config": "sqm"}`, then the enabled `queue` section on the WAN
//! device (the one named by the interface's `l3_device`, or the only enabled one), its
//! `upload` in kbit/s.
//!
//! It is read before anything plans (`jellydemon run`, `reconcile`, `check`; a failure is an
//! error that says why) and again every `bandwidth.meter.sqm_interval` by the budget feed
//! (`src/budget/feed.rs`), which follows a change.

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
        .filter(|m| m.kind == MeterKind::Openwrt)
        .ok_or_else(|| invalid(key, "\"sqm\" needs [bandwidth.meter] kind = \"openwrt\""))?;
    let Meter::Openwrt(mut o) = Meter::new(m)? else {
        return Err(invalid(key, "\"sqm\" needs the openwrt meter"));
    };
    let (mbps, queue) = tokio::time::timeout(m.timeout.saturating_mul(3), read(&mut o))
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()))
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
}
