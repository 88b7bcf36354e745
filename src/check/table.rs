//! The `check` command's output: a plain-text table of the results.
//!
//! In: the results of [`super::run_checks`]. Out: the text the command prints.

use std::fmt::Write as _;

use super::{CheckResult, CheckStatus};

/// Renders the results as a plain-text table (CHECK, STATUS, DETAIL), each failure followed by
/// a `fix:` line, and a one-line summary.
pub fn render_table(results: &[CheckResult]) -> String {
    let name_width = results
        .iter()
        .map(|r| r.link.as_str().len())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(0);
    let status_width = "STATUS".len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:name_width$}  {:status_width$}  DETAIL",
        "CHECK", "STATUS"
    );
    for result in results {
        let _ = writeln!(
            out,
            "{:name_width$}  {:status_width$}  {}",
            result.link.as_str(),
            result.status.to_string(),
            result.detail
        );
        if let Some(fix) = &result.fix {
            let _ = writeln!(out, "{:name_width$}  {:status_width$}  fix: {fix}", "", "");
        }
    }
    let count = |status| results.iter().filter(|r| r.status == status).count();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} skipped",
        count(CheckStatus::Pass),
        count(CheckStatus::Fail),
        count(CheckStatus::Skipped)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Link, any_failed, fix::FIX_KMS_GATE};

    #[test]
    fn table_has_a_row_per_check_and_fix_lines() {
        let results = vec![
            CheckResult::pass(Link::Credentials, "accepted"),
            CheckResult::fail(Link::KmsGate, "disabled", FIX_KMS_GATE),
            CheckResult::skipped(Link::SecretsGate, "needs the kms feature gate"),
        ];
        let table = render_table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CHECK"), "{table}");
        assert!(lines[1].starts_with("credentials") && lines[1].contains("PASS"));
        assert!(lines[2].starts_with("kms feature gate") && lines[2].contains("FAIL"));
        assert!(
            lines[3]
                .trim_start()
                .starts_with("fix: ask your Thalassa administrator")
        );
        assert!(lines[4].contains("SKIP") && lines[4].contains("needs the kms feature gate"));
        assert!(
            table.ends_with("1 passed, 1 failed, 1 skipped\n"),
            "{table}"
        );
        // Columns line up: the STATUS column starts at the same offset in every row.
        let offset = lines[0].find("STATUS").unwrap();
        for line in [lines[1], lines[2], lines[4]] {
            assert!(
                ["PASS", "FAIL", "SKIP"].contains(&&line[offset..offset + 4]),
                "{table}"
            );
        }
        assert!(any_failed(&results));
        assert!(!any_failed(&results[..1]));
    }
}
