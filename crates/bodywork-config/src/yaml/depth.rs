//! How deeply a YAML text nests, found before it is parsed.
//!
//! The YAML parser takes time quadratic in the nesting of flow collections
//! (`[[[[…` 45,000 deep took 5 s, 100,000 deep up to 50 s), so the text is
//! scanned first, in one linear pass that stops at [`MAX_YAML_DEPTH`].
//!
//! Owns: a light scan of YAML's structure (block collections by indentation
//! and the compact `- - x` / `? x` forms, flow collections `[` / `{`, quoted
//! scalars, block scalars, plain scalars and their continuation lines,
//! comments, document markers) that counts open collections.
//! Decisions: the count errs on the high side where YAML is ambiguous or the
//! text is invalid anyway (a line the parser would reject may count a level
//! it does not really open); it never skips text that the parser reads as
//! structure, so a text it passes cannot nest deeper than the limit.
//! Must not: interpret values; the parser does.

/// The deepest nesting of collections accepted in `bodywork.yaml` (a
/// project needs 4: the file, `stages`, a stage, its `batch` / `service`).
pub const MAX_YAML_DEPTH: usize = 64;

/// Where the text first nests deeper than the limit (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep {
    pub line: usize,
    pub column: usize,
}

/// Check that `text` nests at most `max` collections deep.
pub(crate) fn check_depth(text: &str, max: usize) -> Result<(), TooDeep> {
    Scan {
        b: text.as_bytes(),
        text,
        pos: 0,
        line: 1,
        line_start: 0,
        block: Vec::new(),
        max,
    }
    .run()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seq,
    Map,
}

/// What came last inside a flow collection: it decides whether a quote
/// starts a quoted scalar (`['a']`) or is part of a plain one (`[it's]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Indicator,
    Node,
    Plain,
}

struct Scan<'t> {
    text: &'t str,
    b: &'t [u8],
    pos: usize,
    line: usize,
    line_start: usize,
    /// Open block collections: the column each started at, and its kind.
    block: Vec<(usize, Kind)>,
    max: usize,
}

fn blank(c: Option<u8>) -> bool {
    matches!(c, None | Some(b' ' | b'\t' | b'\r' | b'\n'))
}

impl Scan<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn cur(&self) -> Option<u8> {
        self.at(self.pos)
    }

    fn col(&self) -> usize {
        self.pos - self.line_start
    }

    fn eol(&self) -> bool {
        matches!(self.cur(), None | Some(b'\n' | b'\r'))
    }

    /// The error at byte column `col` of the current line.
    fn too_deep(&self, col: usize) -> TooDeep {
        let upto = self
            .text
            .get(self.line_start..self.line_start + col)
            .unwrap_or("");
        TooDeep {
            line: self.line,
            column: upto.chars().count() + 1,
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.cur(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Past the end of the current line, to the start of the next.
    fn next_line(&mut self) {
        while !self.eol() {
            self.pos += 1;
        }
        self.newline();
    }

    /// At a line break (or the end): step over it.
    fn newline(&mut self) {
        match self.cur() {
            Some(b'\r') if self.at(self.pos + 1) == Some(b'\n') => self.pos += 2,
            Some(b'\r' | b'\n') => self.pos += 1,
            _ => return,
        }
        self.line += 1;
        self.line_start = self.pos;
    }

    /// Spaces at the start of the current line (the cursor must be there).
    fn indent(&self) -> usize {
        self.b[self.pos..]
            .iter()
            .take_while(|c| **c == b' ')
            .count()
    }

    /// The column of the innermost open block collection (-1 when none).
    fn parent(&self) -> isize {
        self.block
            .last()
            .map_or(-1, |(c, _)| isize::try_from(*c).unwrap_or(isize::MAX))
    }

    fn unroll(&mut self, col: usize) {
        while self.block.last().is_some_and(|(c, _)| *c > col) {
            self.block.pop();
        }
    }

    /// A block collection of `kind` at `col`: the open one, or a new one.
    fn open(&mut self, col: usize, kind: Kind) -> Result<(), TooDeep> {
        self.unroll(col);
        if kind == Kind::Map && self.block.last() == Some(&(col, Kind::Seq)) {
            // A key at the column of a sequence ends it (`a:\n- x\nb: y`).
            let outer = self.block.len().checked_sub(2).map(|i| self.block[i]);
            if outer == Some((col, Kind::Map)) {
                self.block.pop();
            }
        }
        if self.block.last() != Some(&(col, kind)) {
            self.block.push((col, kind));
            if self.block.len() > self.max {
                return Err(self.too_deep(col));
            }
        }
        Ok(())
    }

    fn run(mut self) -> Result<(), TooDeep> {
        // Lines more indented than this continue a plain scalar.
        let mut plain_above: Option<isize> = None;
        while self.pos < self.b.len() {
            let indent = self.indent();
            self.pos += indent;
            if self.eol() {
                self.newline();
                continue;
            }
            if self.cur() == Some(b'#') {
                plain_above = None;
                self.next_line();
                continue;
            }
            if indent == 0 && self.marker() {
                self.block.clear();
                plain_above = None;
                self.pos += 3;
            } else if indent == 0 && self.cur() == Some(b'%') {
                self.next_line();
                continue;
            } else if plain_above.is_some_and(|p| isize::try_from(indent).unwrap_or(0) > p) {
                match self.plain()? {
                    Plain::Key(col) => self.open(col, Kind::Map)?,
                    Plain::Comment => {}
                    Plain::End => {
                        self.newline();
                        continue;
                    }
                }
                plain_above = None;
            } else {
                plain_above = None;
                self.unroll(indent);
            }
            plain_above = self.block_line(plain_above)?;
        }
        Ok(())
    }

    /// `---` or `...` alone or followed by a blank.
    fn marker(&self) -> bool {
        let rest = &self.b[self.pos..];
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && blank(rest.get(3).copied())
    }

    /// The rest of a line in block context, from a place where a node may
    /// start; returns where a plain scalar that ended the line continues.
    fn block_line(&mut self, mut plain_above: Option<isize>) -> Result<Option<isize>, TooDeep> {
        // The column of a quoted or flow node that may turn out to be a key.
        let mut node_col: Option<usize> = None;
        loop {
            self.skip_spaces();
            if self.eol() {
                self.newline();
                return Ok(plain_above);
            }
            let col = self.col();
            let c = self.cur();
            let indicator = blank(self.at(self.pos + 1));
            match c {
                Some(b'-') if indicator => {
                    self.open(col, Kind::Seq)?;
                    self.pos += 1;
                }
                Some(b'?') if indicator => {
                    self.open(col, Kind::Map)?;
                    self.pos += 1;
                }
                Some(b':') if indicator => {
                    self.open(node_col.take().unwrap_or(col), Kind::Map)?;
                    self.pos += 1;
                }
                Some(b'[' | b'{') => {
                    self.flow()?;
                    node_col = Some(col);
                }
                Some(q @ (b'"' | b'\'')) => {
                    self.quoted(q);
                    node_col = Some(col);
                }
                Some(b'|' | b'>') => {
                    self.block_scalar();
                    return Ok(None);
                }
                // An anchor, a tag or an alias: not a plain scalar, so a
                // line after it does not continue it.
                Some(b'&' | b'!' | b'*') => {
                    while !blank(self.cur()) {
                        self.pos += 1;
                    }
                }
                Some(b'#') => {
                    self.next_line();
                    return Ok(None);
                }
                _ => match self.plain()? {
                    Plain::Key(col) => self.open(col, Kind::Map)?,
                    Plain::Comment => {
                        self.next_line();
                        return Ok(None);
                    }
                    Plain::End => {
                        plain_above = Some(self.parent());
                        self.newline();
                        return Ok(plain_above);
                    }
                },
            }
        }
    }

    /// A plain scalar in block context, from the cursor to a `: ` (a key;
    /// the cursor is left after the `:`), a ` #` (a comment; left at the
    /// `#`) or the end of the line (left there).
    fn plain(&mut self) -> Result<Plain, TooDeep> {
        let start = self.col();
        loop {
            if self.eol() {
                return Ok(Plain::End);
            }
            let c = self.cur();
            let next = self.at(self.pos + 1);
            if c == Some(b':') && blank(next) {
                self.pos += 1;
                return Ok(Plain::Key(start));
            }
            if blank(c) && next == Some(b'#') {
                self.pos += 1;
                return Ok(Plain::Comment);
            }
            self.pos += 1;
        }
    }

    /// A quoted scalar from its opening quote to past its closing one (or
    /// the end of the text), across lines.
    fn quoted(&mut self, q: u8) {
        self.pos += 1;
        loop {
            match self.cur() {
                None => return,
                Some(b'\r' | b'\n') => self.newline(),
                Some(b'\\') if q == b'"' => {
                    self.pos += 1;
                    if self.eol() {
                        self.newline();
                    } else {
                        self.pos += 1;
                    }
                }
                Some(b'\'') if q == b'\'' && self.at(self.pos + 1) == Some(b'\'') => {
                    self.pos += 2;
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    return;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A flow collection from its opening bracket to past its closing one
    /// (or the end of the text), across lines, counting how deep it goes.
    fn flow(&mut self) -> Result<(), TooDeep> {
        let mut depth = 0usize;
        let mut last = Last::Indicator;
        loop {
            let Some(c) = self.cur() else {
                return Ok(());
            };
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if self.block.len() + depth > self.max {
                        return Err(self.too_deep(self.col()));
                    }
                    last = Last::Indicator;
                    self.pos += 1;
                }
                b']' | b'}' => {
                    self.pos += 1;
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                    last = Last::Node;
                }
                b',' => {
                    last = Last::Indicator;
                    self.pos += 1;
                }
                b'\r' | b'\n' => self.newline(),
                b' ' | b'\t' => {
                    self.pos += 1;
                    if self.cur() == Some(b'#') {
                        self.next_line();
                    }
                }
                b'"' | b'\'' if last == Last::Indicator => {
                    self.quoted(c);
                    last = Last::Node;
                }
                b':' | b'?' => {
                    let next = self.at(self.pos + 1);
                    let value = blank(next)
                        || matches!(next, Some(b',' | b'[' | b']' | b'{' | b'}'))
                        || (c == b':' && last == Last::Node);
                    last = if value { Last::Indicator } else { Last::Plain };
                    self.pos += 1;
                }
                b'#' if self.pos == self.line_start => self.next_line(),
                _ => {
                    last = Last::Plain;
                    self.pos += 1;
                }
            }
        }
    }

    /// A block scalar (`|` / `>`): its header and its content lines; the
    /// cursor is left at the start of the first line after it.
    fn block_scalar(&mut self) {
        self.pos += 1;
        let mut explicit = None;
        while !blank(self.cur()) {
            if let Some(d @ b'1'..=b'9') = self.cur() {
                explicit = Some(usize::from(d - b'0'));
            }
            self.pos += 1;
        }
        self.next_line();
        // As the parser does: an explicit indentation counts from the
        // parent's column, else the first line that is not blank sets it.
        let parent = self.parent();
        let above = usize::try_from(parent + 1).unwrap_or(0);
        let mut content = explicit.map(|d| usize::try_from(parent).map_or(d, |p| p + d));
        while self.pos < self.b.len() {
            let indent = self.indent();
            let rest = self.at(self.pos + indent);
            if matches!(rest, None | Some(b'\r' | b'\n')) {
                self.next_line();
                continue;
            }
            let need = *content.get_or_insert(indent.max(above).max(1));
            if indent < need {
                return;
            }
            self.next_line();
        }
    }
}

/// How a plain scalar ended.
enum Plain {
    /// It is a key starting at this column.
    Key(usize),
    /// A comment follows.
    Comment,
    /// At the end of the line.
    End,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        check_depth(text, max).is_ok()
    }

    /// The least limit that `text` passes.
    fn depth(text: &str) -> usize {
        (0..100).find(|m| depth_ok(text, *m)).unwrap()
    }

    #[test]
    fn counts_block_collections() {
        assert_eq!(depth("a: 1\n"), 1);
        assert_eq!(depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth("a:\n- x\n- y\nb: 2\n"), 2);
        assert_eq!(depth("- - - x\n"), 3);
        assert_eq!(depth("- a: 1\n  b:\n  - c\n"), 3);
        assert_eq!(depth("? - x\n: y\n"), 2);
        assert_eq!(depth("a:\n  b: 1\nc:\n  d: 2\n"), 2);
        assert_eq!(depth("--- !tag &x\na: &y\n  b: *x\n"), 2);
        assert_eq!(depth("a: *x\n  [[x]]\n"), 3);
    }

    #[test]
    fn counts_flow_collections() {
        assert_eq!(depth("a: [1, [2, {b: [3]}]]\n"), 5);
        assert_eq!(depth("[[]]\n"), 2);
        assert_eq!(depth("a: [\n  [1],\n  [2]\n]\nb: 1\n"), 3);
        assert_eq!(depth("{\"a\":[1]}\n"), 2);
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_count() {
        assert_eq!(depth("a: x[[[[y\n"), 1);
        assert_eq!(depth("a: '[[[[' # [[[[\n"), 1);
        assert_eq!(depth("a: \"[[\\\"[[\"\n"), 1);
        assert_eq!(depth("a: |\n  [[[[\n  {{{{\nb: 1\n"), 1);
        assert_eq!(depth("a: >2\n   [[[[\nb: 1\n"), 1);
        assert_eq!(depth("a: some\n  long [[[[ text\nb: 1\n"), 1);
        assert_eq!(depth("a: [x # [[[[\n  ]\n"), 2);
        assert_eq!(depth("# [[[[\na: 1\n"), 1);
    }

    #[test]
    fn quotes_inside_plain_scalars_hide_nothing() {
        // A quote inside a plain scalar is a character, not a quoted
        // scalar that would hide the brackets after it.
        let deep = "[".repeat(20);
        assert_eq!(depth(&format!("a: [it's, {deep}]\nb: 'x'\n")), 22);
        assert_eq!(depth(&format!("a: foo\n  'bar\nb: {deep} 'x'\n")), 21);
    }

    #[test]
    fn a_block_scalar_ends_where_its_indentation_does() {
        let deep = "[".repeat(20);
        assert_eq!(depth(&format!("a: |\n    text\n  {deep}\n")), 21);
        assert_eq!(depth(&format!("- |\n  text\n- {deep}\n")), 21);
    }

    #[test]
    fn reports_where_the_limit_is_passed() {
        let text = format!("a: 1\nb: {}", "[".repeat(100));
        assert_eq!(
            check_depth(&text, 64),
            Err(TooDeep {
                line: 2,
                column: 67
            })
        );
        let text = format!("a:\n{}x\n", "- ".repeat(100));
        assert_eq!(
            check_depth(&text, 64),
            Err(TooDeep {
                line: 2,
                column: 127
            })
        );
    }
}
