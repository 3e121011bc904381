//! Human-readable output of `scan`.

use std::fmt::Write;

use agent_bom_protocol::Inventory;

/// Render an inventory as a table for the terminal.
pub fn table(inventory: &Inventory) -> String {
    let mut out = String::new();
    let h = &inventory.host;
    let _ = writeln!(
        out,
        "host: {} ({} {}{})",
        h.hostname,
        h.os,
        h.arch,
        h.os_version
            .as_deref()
            .map(|v| format!(", {v}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "\nclients ({}):", inventory.clients.len());
    for c in &inventory.clients {
        let _ = writeln!(out, "  {:<16} {}", c.name, c.config_files.join(", "));
    }
    let _ = writeln!(out, "\nservers ({}):", inventory.servers.len());
    if !inventory.servers.is_empty() {
        let rows: Vec<[String; 5]> = inventory
            .servers
            .iter()
            .map(|s| {
                let launch = match (&s.command, &s.url) {
                    (Some(cmd), _) => std::iter::once(cmd.as_str())
                        .chain(s.args.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(" "),
                    (None, Some(url)) => url.clone(),
                    (None, None) => "-".into(),
                };
                let env = if s.env_keys.is_empty() {
                    String::new()
                } else {
                    format!(" env: {}", s.env_keys.join(","))
                };
                [
                    s.name.clone(),
                    s.client.clone(),
                    s.scope.as_str().to_string(),
                    s.transport.as_str().to_string(),
                    format!("{}{env}", truncate(&launch, 80)),
                ]
            })
            .collect();
        let headers = ["NAME", "CLIENT", "SCOPE", "TRANSPORT", "LAUNCH"];
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 5]| {
            format!(
                "  {:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )
        };
        let _ = writeln!(out, "{}", line(headers));
        for r in &rows {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
    }
    if !inventory.errors.is_empty() {
        let _ = writeln!(out, "\nerrors ({}):", inventory.errors.len());
        for e in &inventory.errors {
            let _ = writeln!(out, "  {}: {}", e.path, e.message);
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
