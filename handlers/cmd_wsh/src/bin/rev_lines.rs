//! `rev`, flushing each line: reads lines from stdin and writes each one reversed (by
//! Unicode scalar value) to stdout, flushing after every line, so it answers at once when
//! stdout is a pipe (`/usr/bin/rev` block-buffers it). Exits 0 at the end of its input.

use std::io::{BufRead, Write};

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::new();
    let mut input = std::io::BufReader::new(stdin);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let reversed: String = text.chars().rev().collect();
        writeln!(stdout, "{reversed}")?;
        stdout.flush()?;
    }
}
