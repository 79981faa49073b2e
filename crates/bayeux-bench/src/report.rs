//! Turns the JSON lines of several runs into one markdown table comparing servers.
//!
//! Lines are grouped by `scenario` and `label` (the server). When a scenario ran several times
//! against a server, each metric is the median of those runs. The first label seen is the
//! reference (bayeuxd in `bench/compare.sh`); every other server gets a ratio column,
//! reference / peer. A failed run (an `error` field) or a server that does not offer a
//! transport shows as `n/a`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Report parameters.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// Files of JSON lines written by runs (`-` for stdin).
    #[arg(required = true)]
    pub files: Vec<String>,
}

/// The metrics shown per mode: JSON key and row title.
fn metrics(mode: &str) -> &'static [(&'static str, &'static str)] {
    match mode {
        "fanout" => &[
            ("published_per_s", "published msg/s"),
            ("offered_per_s", "deliveries due/s"),
            ("delivered_per_s", "delivered msg/s"),
            ("loss", "lost"),
            ("duplicates", "duplicates"),
            ("lat_p50_ms", "latency p50 ms"),
            ("lat_p99_ms", "latency p99 ms"),
            ("lat_p999_ms", "latency p99.9 ms"),
            ("lat_max_ms", "latency max ms"),
            ("server_cpu_pct", "server CPU % of a core"),
            ("gen_cpu_pct", "generator CPU %"),
        ],
        "idle" => &[
            ("set_up", "sessions set up"),
            ("setup_per_s", "sessions set up/s"),
            ("hs_p50_ms", "handshake p50 ms"),
            ("hs_p99_ms", "handshake p99 ms"),
            ("rss_per_session_b", "server RSS B/session"),
            ("server_cpu_pct", "server CPU % during setup"),
            ("gen_cpu_pct", "generator CPU % during setup"),
        ],
        _ => &[
            ("rtt_per_s", "round trips/s"),
            ("rtt_p50_us", "RTT p50 µs"),
            ("rtt_p99_us", "RTT p99 µs"),
            ("rtt_p999_us", "RTT p99.9 µs"),
            ("loss", "lost"),
            ("server_cpu_pct", "server CPU % of a core"),
        ],
    }
}

/// Reads the files and returns the markdown table.
pub fn run(args: &ReportArgs) -> Result<String, String> {
    let mut lines = Vec::new();
    for file in &args.files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
        } else {
            std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
        };
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            lines.push(serde_json::from_str::<Value>(line).map_err(|e| format!("{file}: {e}"))?);
        }
    }
    Ok(table(&lines))
}

/// The markdown table for `lines`.
pub fn table(lines: &[Value]) -> String {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut scenarios: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    // (scenario, server) -> runs
    let mut runs: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for line in lines {
        let (scenario, server) = (text(line, "scenario"), text(line, "label"));
        if !scenarios.contains(&scenario) {
            scenarios.push(scenario.clone());
        }
        if !servers.contains(&server) {
            servers.push(server.clone());
        }
        runs.entry((scenario, server)).or_default().push(line);
    }
    let Some(reference) = servers.first().cloned() else {
        return String::from("no results\n");
    };
    let mut out = String::from("| scenario | metric |");
    for server in &servers {
        out.push_str(&format!(" {server} |"));
    }
    for peer in &servers[1..] {
        out.push_str(&format!(" {reference}/{peer} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---:|".repeat(servers.len() * 2 - 1));
    out.push('\n');
    for scenario in &scenarios {
        let mode = runs
            .iter()
            .find(|((s, _), _)| s == scenario)
            .map(|(_, v)| text(v[0], "mode"))
            .unwrap_or_default();
        for (i, (key, title)) in metrics(&mode).iter().enumerate() {
            let name = if i == 0 { scenario.as_str() } else { "" };
            out.push_str(&format!("| {name} | {title} |"));
            let values: Vec<Result<f64, String>> = servers
                .iter()
                .map(|server| median(runs.get(&(scenario.clone(), server.clone())), key))
                .collect();
            for value in &values {
                match value {
                    Ok(v) => out.push_str(&format!(" {} |", show(*v))),
                    Err(why) => out.push_str(&format!(" {why} |")),
                }
            }
            for value in &values[1..] {
                match (&values[0], value) {
                    (Ok(a), Ok(b)) if *b != 0.0 => out.push_str(&format!(" {:.2} |", a / b)),
                    (Ok(a), Ok(_)) if *a == 0.0 => out.push_str(" = |"),
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The median of metric `key` over the successful runs, or why there is none.
fn median(runs: Option<&Vec<&Value>>, key: &str) -> Result<f64, String> {
    let Some(runs) = runs else {
        return Err("not run".into());
    };
    let mut values: Vec<f64> = runs
        .iter()
        .filter(|r| r.get("error").is_none())
        .filter_map(|r| r[key].as_f64())
        .collect();
    if values.is_empty() {
        return Err("n/a".into());
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Ok(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// A number with as many digits as are meaningful for a table.
fn show(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn medians_ratios_and_missing_runs() {
        let lines = [
            json!({"scenario":"echo-ws","label":"a","mode":"echo","rtt_per_s":10.0}),
            json!({"scenario":"echo-ws","label":"a","mode":"echo","rtt_per_s":30.0}),
            json!({"scenario":"echo-ws","label":"a","mode":"echo","rtt_per_s":20.0}),
            json!({"scenario":"echo-ws","label":"b","mode":"echo","rtt_per_s":10.0}),
            json!({"scenario":"echo-ws","label":"c","mode":"echo","error":"400"}),
        ];
        let t = table(&lines);
        assert!(
            t.contains("| echo-ws | round trips/s | 20.0 | 10.0 | n/a | 2.00 | - |"),
            "{t}"
        );
    }
}
