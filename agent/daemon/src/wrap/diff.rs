//! A small line diff for `--dry-run`: the changed region between the common head and tail,
//! with a few lines of context (config edits are local, so one hunk per file is the norm).

use std::path::Path;

const CONTEXT: usize = 2;

/// A unified-style diff of `before` → `after`; empty when equal.
pub fn unified(path: &Path, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.split_inclusive('\n').collect();
    let b: Vec<&str> = after.split_inclusive('\n').collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_tail = a.len().min(b.len()) - head;
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_tail)
        .take_while(|(x, y)| x == y)
        .count();
    let start = head.saturating_sub(CONTEXT);
    let (a_end, b_end) = (a.len() - tail, b.len() - tail);
    let a_ctx_end = (a_end + CONTEXT).min(a.len());
    let mut out = format!(
        "--- {p}\n+++ {p} (wrapped by agent-bom)\n@@ -{},{} +{},{} @@\n",
        start + 1,
        a_ctx_end - start,
        start + 1,
        (b_end + CONTEXT).min(b.len()) - start,
        p = path.display()
    );
    let line = |prefix: char, l: &str, out: &mut String| {
        out.push(prefix);
        out.push_str(l);
        if !l.ends_with('\n') {
            out.push('\n');
        }
    };
    for l in &a[start..head] {
        line(' ', l, &mut out);
    }
    for l in &a[head..a_end] {
        line('-', l, &mut out);
    }
    for l in &b[head..b_end] {
        line('+', l, &mut out);
    }
    for l in &a[a_end..a_ctx_end] {
        line(' ', l, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hunk_with_context() {
        let d = unified(Path::new("f"), "a\nb\nc\nd\ne\n", "a\nb\nX\nd\ne\n");
        assert!(d.contains("-c\n+X\n"));
        assert!(d.contains(" b\n") && d.contains(" d\n"));
        assert_eq!(unified(Path::new("f"), "same", "same"), "");
        let d = unified(Path::new("f"), "x", "y");
        assert!(d.contains("-x\n+y\n"));
    }
}
