//! The `--dry-run` diff: a unified diff per file, with a few lines of context, made with
//! `similar` (Myers' algorithm), so edits far apart in one file show as separate hunks.

use std::path::Path;

use similar::TextDiff;

/// Lines of context around each change.
const CONTEXT: usize = 2;

/// A unified diff of `before` → `after`; empty when equal.
pub fn unified(path: &Path, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let p = path.display().to_string();
    let mut out = TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(CONTEXT)
        .missing_newline_hint(false)
        .header(&p, &format!("{p} (wrapped by agent-bom)"))
        .to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_with_context() {
        let d = unified(Path::new("f"), "a\nb\nc\nd\ne\n", "a\nb\nX\nd\ne\n");
        assert!(
            d.starts_with("--- f\n+++ f (wrapped by agent-bom)\n@@ -1,5 +1,5 @@\n"),
            "{d}"
        );
        assert!(d.contains("-c\n+X\n"));
        assert!(d.contains(" b\n") && d.contains(" d\n"));
        assert_eq!(unified(Path::new("f"), "same", "same"), "");
        let d = unified(Path::new("f"), "x", "y");
        assert!(d.contains("-x\n+y\n"), "{d}");
        // Two edits far apart are two hunks, not one block spanning the file.
        let before: String = (0..40).map(|i| format!("{i}\n")).collect();
        let after: String = (0..40)
            .map(|i| match i {
                3 => "three\n".to_string(),
                35 => "thirty-five\n".to_string(),
                i => format!("{i}\n"),
            })
            .collect();
        let d = unified(Path::new("f"), &before, &after);
        assert_eq!(d.matches("@@ ").count(), 2, "{d}");
        assert!(
            !d.contains(" 20\n"),
            "unchanged middle lines are not shown: {d}"
        );
    }
}
