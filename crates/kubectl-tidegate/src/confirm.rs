//! Asking the person at the terminal before a change to production.
//!
//! `approve` and `rollback` show what they are about to change, then ask. The question is only
//! ever answered from a terminal: with standard input redirected (a pipe, a file, `/dev/null`)
//! and no `--yes`, the command refuses instead of guessing, so nothing is ever approved silently.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail};

/// How a command gets its go-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--yes`: no question; the summary is printed as part of the output.
    Assume,
    /// Ask on the terminal.
    Ask,
    /// Standard input is not a terminal and `--yes` was not given: refuse.
    Refuse,
}

/// The mode for `--yes` and a standard input that is or is not a terminal.
pub fn mode(yes: bool, stdin_is_terminal: bool) -> Mode {
    match (yes, stdin_is_terminal) {
        (true, _) => Mode::Assume,
        (false, true) => Mode::Ask,
        (false, false) => Mode::Refuse,
    }
}

/// Whether an answer is yes: `y` or `yes`, any case, surrounding blanks ignored. Everything else,
/// the empty answer included, is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Writes `question` and ` [y/N] ` to `terminal` and reads one line from `input`. End of input
/// is no.
pub fn ask(input: &mut impl BufRead, terminal: &mut impl Write, question: &str) -> std::io::Result<bool> {
    write!(terminal, "{question} [y/N] ")?;
    terminal.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        // Ctrl-D: end the prompt's line so the error does not stick to it.
        writeln!(terminal)?;
        return Ok(false);
    }
    Ok(is_yes(&answer))
}

/// What one confirmation needs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What is about to change, several lines, each ending in `\n`.
    pub summary: &'a str,
    /// The question, without `[y/N]`.
    pub question: &'a str,
    /// The verb in the refusal, e.g. `approve` in "pass --yes to approve without a prompt".
    pub verb: &'a str,
    /// The error when the answer is not yes.
    pub declined: &'a str,
}

/// Gets the go-ahead for a change, with `--yes` given or not. Returns what goes in front of the
/// command's output: the summary with `--yes` (it was not shown yet), nothing after a question
/// (the summary was shown before it).
///
/// Asking prints the summary on standard output (and, when standard output is not a terminal, on
/// standard error as well, so the person answering sees it) and the question on standard error,
/// then reads one line from standard input.
pub async fn confirm(yes: bool, request: Request<'_>) -> anyhow::Result<String> {
    match mode(yes, std::io::stdin().is_terminal()) {
        Mode::Assume => Ok(request.summary.to_string()),
        Mode::Refuse => bail!("stdin is not a terminal: pass --yes to {} without a prompt", request.verb),
        Mode::Ask => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(request.summary.as_bytes())?;
            stdout.flush()?;
            let copy = !stdout.is_terminal();
            drop(stdout);
            let summary = request.summary.to_string();
            let question = request.question.to_string();
            // Reading a terminal blocks; keep it off the runtime's only thread.
            let answer = tokio::task::spawn_blocking(move || {
                let mut terminal = std::io::stderr().lock();
                if copy {
                    terminal.write_all(summary.as_bytes())?;
                }
                ask(&mut std::io::stdin().lock(), &mut terminal, &question)
            })
            .await
            .map_err(|e| anyhow!("the prompt failed: {e}"))?
            .map_err(|e| anyhow!("cannot read the answer from the terminal: {e}"))?;
            if !answer {
                bail!("{}", request.declined);
            }
            Ok(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_y_and_yes_are_yes() {
        for yes in ["y", "Y", "yes", "YES", "Yes", " y\n", "yes\r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "N", "yy", "ye", "yes please", "oui", "1", "true", "y es"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn the_mode_never_approves_without_a_terminal_or_yes() {
        assert_eq!(mode(true, true), Mode::Assume);
        assert_eq!(mode(true, false), Mode::Assume);
        assert_eq!(mode(false, true), Mode::Ask);
        assert_eq!(mode(false, false), Mode::Refuse);
    }

    #[test]
    fn ask_writes_the_question_and_reads_one_line() {
        let mut terminal = Vec::new();
        let mut input = std::io::Cursor::new("y\nsomething else\n");
        assert!(ask(&mut input, &mut terminal, "Approve sha256:abc for production?").expect("asks"));
        assert_eq!(String::from_utf8(terminal).expect("utf-8"), "Approve sha256:abc for production? [y/N] ");

        for (input, expected) in [("n\n", false), ("\n", false), ("yes\n", true), ("nope\ny\n", false)] {
            let mut terminal = Vec::new();
            assert_eq!(
                ask(&mut std::io::Cursor::new(input), &mut terminal, "Q?").expect("asks"),
                expected,
                "{input:?}"
            );
        }
        // End of input is no, and ends the line.
        let mut terminal = Vec::new();
        assert!(!ask(&mut std::io::Cursor::new(""), &mut terminal, "Q?").expect("asks"));
        assert_eq!(String::from_utf8(terminal).expect("utf-8"), "Q? [y/N] \n");
    }
}
