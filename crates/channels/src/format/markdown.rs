//! A small Markdown tokenizer for what chat models actually write.
//!
//! [`parse`] turns text into [`Block`]s whose inline content is a tree of [`Inline`]s; the
//! per-platform renderers walk that tree. The grammar is a forgiving subset of CommonMark/GFM:
//! paragraphs, ATX headings, fenced code, blockquotes, bullet and ordered lists, rules, pipe
//! tables, emphasis, strikethrough, inline code, links and bare URLs. Anything it does not
//! recognize, and every unbalanced delimiter, stays literal text.
//!
//! This module must not render or escape for any platform, allocate without bound on hostile
//! input, recurse without a depth cap, or panic: every function here accepts any `&str`.

/// How deep blockquotes nest before further `>` markers are kept as literal text.
const MAX_QUOTE_DEPTH: usize = 4;
/// How deep emphasis nests before further delimiters are kept as literal text.
const MAX_INLINE_DEPTH: usize = 16;
/// Longest link target or bare URL recognized; longer ones stay literal text.
const MAX_URL_CHARS: usize = 2048;

/// A block-level element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Consecutive text lines; the line breaks are kept as [`Inline::LineBreak`].
    Paragraph(Vec<Inline>),
    /// An ATX heading (`#` .. `######`).
    Heading {
        /// 1 to 6.
        level: u8,
        /// The heading text, closing `#`s removed.
        content: Vec<Inline>,
    },
    /// A fenced code block (```` ``` ```` or `~~~`), contents verbatim.
    CodeBlock {
        /// The first word of the info string, if any.
        lang: Option<String>,
        /// The lines between the fences, the opening fence's indentation removed.
        code: String,
    },
    /// A `>` blockquote and what it contains.
    Quote(Vec<Block>),
    /// One list item. Lists are flat: nesting is the item's `depth`.
    ListItem {
        /// Bullet or the number the model wrote.
        marker: ListMarker,
        /// 0 for a top-level item, 1 for an item nested under it, and so on.
        depth: usize,
        /// The item text, continuation lines included.
        content: Vec<Inline>,
    },
    /// A thematic break (`---`, `***`, `___`).
    Rule,
    /// A GFM pipe table: a header row, a delimiter row, then body rows.
    Table {
        /// Header cells.
        header: Vec<Vec<Inline>>,
        /// Body rows; every row has as many cells as the widest row.
        rows: Vec<Vec<Vec<Inline>>>,
    },
}

/// The marker of a list item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMarker {
    /// `-`, `*` or `+`.
    Bullet,
    /// `1.` or `1)`, with the number as written.
    Ordered(u32),
}

/// An inline element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inline {
    /// Literal text (backslash escapes already resolved).
    Text(String),
    /// An inline code span; contents literal.
    Code(String),
    /// `**x**` or `__x__`.
    Bold(Vec<Inline>),
    /// `*x*` or `_x_`.
    Italic(Vec<Inline>),
    /// `~~x~~`.
    Strike(Vec<Inline>),
    /// `[text](url)` (also `![alt](url)`). The URL is not validated here: renderers decide.
    Link {
        /// The link text; never contains another link.
        text: Vec<Inline>,
        /// The target exactly as written.
        url: String,
    },
    /// A bare `http(s)://` URL or an `<http(s)://…>` autolink.
    Url(String),
    /// A line break inside a paragraph or list item.
    LineBreak,
}

/// Parses Markdown into blocks. Never fails: unrecognized syntax is paragraph text.
pub fn parse(md: &str) -> Vec<Block> {
    parse_blocks(md, 0)
}

/// Parses one run of inline Markdown (no block syntax) into an inline tree.
pub fn parse_inline(text: &str) -> Vec<Inline> {
    parse_inline_with(text, true)
}

/// Plain text of an inline tree: markup dropped, code as is, a link written as `text (url)` when
/// its URL is `http`, `https`, `mailto` or `tg` and differs from the text, as its text alone
/// otherwise (so a `javascript:` target never shows).
pub fn inline_plain(nodes: &[Inline]) -> String {
    let mut out = String::new();
    push_plain(nodes, &mut out);
    out
}

fn push_plain(nodes: &[Inline], out: &mut String) {
    for node in nodes {
        match node {
            Inline::Text(s) | Inline::Code(s) | Inline::Url(s) => out.push_str(s),
            Inline::Bold(c) | Inline::Italic(c) | Inline::Strike(c) => push_plain(c, out),
            Inline::LineBreak => out.push('\n'),
            Inline::Link { text, url } => {
                let label = inline_plain(text);
                if !link_allowed(url, PLAIN_LINK_SCHEMES) {
                    out.push_str(&label);
                } else if label.trim().is_empty() || label == *url {
                    out.push_str(url);
                } else {
                    out.push_str(&label);
                    out.push_str(" (");
                    out.push_str(url);
                    out.push(')');
                }
            }
        }
    }
}

/// Schemes whose URLs plain-text output spells out after a link's text.
pub(crate) const PLAIN_LINK_SCHEMES: &[&str] = &["http", "https", "mailto", "tg"];

/// Whether `url` is an absolute URL with one of `schemes` (compared case-insensitively), free of
/// whitespace and control characters. `http`/`https` also need a `//` authority.
pub fn link_allowed(url: &str, schemes: &[&str]) -> bool {
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((scheme, rest)) = url.split_once(':') else { return false };
    if rest.is_empty() || !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return false;
    }
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        return rest.strip_prefix("//").is_some_and(|host| !host.is_empty() && !host.starts_with('/'));
    }
    true
}

/// Joins rendered blocks: consecutive list items on their own lines, anything else separated by
/// a blank line. Blocks that render to nothing are skipped.
pub(crate) fn join_blocks(blocks: &[Block], mut render: impl FnMut(&Block) -> String) -> String {
    let mut out = String::new();
    let mut prev_item = false;
    for block in blocks {
        let piece = render(block);
        if piece.is_empty() {
            continue;
        }
        let item = matches!(block, Block::ListItem { .. });
        if !out.is_empty() {
            out.push_str(if item && prev_item { "\n" } else { "\n\n" });
        }
        out.push_str(&piece);
        prev_item = item;
    }
    out
}

/// The bullet for a list item at `depth`, or its number.
pub(crate) fn list_prefix(marker: ListMarker, depth: usize) -> String {
    let indent = "  ".repeat(depth.min(6));
    match marker {
        ListMarker::Bullet => {
            let bullet = match depth {
                0 => '•',
                1 => '◦',
                _ => '▪',
            };
            format!("{indent}{bullet} ")
        }
        ListMarker::Ordered(n) => format!("{indent}{n}. "),
    }
}

/// What a rule renders as on every platform: as long as `---`, readable without markup.
pub(crate) const RULE_TEXT: &str = "———";

/// A table as aligned plain-text columns (cells as [`inline_plain`], one line each), meant for a
/// monospace block. Wide (CJK, emoji) characters count as two columns.
pub fn table_to_text(header: &[Vec<Inline>], rows: &[Vec<Vec<Inline>>]) -> String {
    let cell_text = |c: &Vec<Inline>| inline_plain(c).replace('\n', " ");
    let mut grid: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    grid.push(header.iter().map(cell_text).collect());
    grid.extend(rows.iter().map(|r| r.iter().map(cell_text).collect()));
    let columns = grid.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &grid {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = String>| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                line.push_str(" | ");
            }
            let pad = w.saturating_sub(display_width(&cell));
            line.push_str(&cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line.trim_end());
    };
    for (i, row) in grid.iter().enumerate() {
        let mut cells = row.iter().cloned().chain(std::iter::repeat(String::new())).take(columns);
        push_row(&mut cells);
        if i == 0 {
            let mut rule = widths.iter().map(|w| "-".repeat((*w).max(1)));
            push_row(&mut rule);
        }
    }
    out
}

/// Columns a string takes in a monospace font, approximately: East Asian wide and emoji
/// characters count two, combining marks and zero-width characters none.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x0300..=0x036F | 0x200B..=0x200F | 0xFE00..=0xFE0F | 0x20E3 => 0,
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x1F300..=0x1FAFF
            | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Block structure

/// An opening code fence line.
pub(crate) struct FenceOpen<'a> {
    /// Leading spaces/tabs before the fence.
    pub indent: usize,
    /// '`' or '~'.
    pub ch: char,
    /// How many fence characters.
    pub len: usize,
    /// The info string, trimmed.
    pub info: &'a str,
}

/// Recognizes an opening fence: three or more backticks or tildes after any indentation. A
/// backtick fence's info string may not contain backticks (that is inline code on one line).
pub(crate) fn fence_open(line: &str) -> Option<FenceOpen<'_>> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - trimmed.len();
    let ch = trimmed.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = trimmed.bytes().take_while(|&b| b == ch as u8).count();
    if len < 3 {
        return None;
    }
    let info = trimmed.get(len..).unwrap_or("").trim();
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some(FenceOpen { indent, ch, len, info })
}

/// Whether `line` closes a fence opened with `len` `ch`s: at least as many, nothing else.
pub(crate) fn is_fence_close(line: &str, ch: char, len: usize) -> bool {
    let t = line.trim();
    let n = t.bytes().take_while(|&b| b == ch as u8).count();
    n >= len && n == t.len()
}

fn parse_blocks(text: &str, quote_depth: usize) -> Vec<Block> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut p = BlockParser { blocks: Vec::new(), para: Vec::new(), item: None, list_indents: Vec::new() };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() {
            p.flush();
            i += 1;
            continue;
        }
        if let Some(fence) = fence_open(line) {
            p.flush_all();
            let mut code: Vec<&str> = Vec::new();
            i += 1;
            while i < lines.len() && !is_fence_close(lines[i], fence.ch, fence.len) {
                code.push(strip_indent(lines[i], fence.indent));
                i += 1;
            }
            i += 1; // the closing fence (or past the end)
            let lang = fence.info.split_whitespace().next().map(str::to_owned);
            p.blocks.push(Block::CodeBlock { lang, code: code.join("\n") });
            continue;
        }
        if let Some((level, content)) = heading(line) {
            p.flush_all();
            p.blocks.push(Block::Heading { level, content: parse_inline(content) });
            i += 1;
            continue;
        }
        if is_rule(line) {
            p.flush_all();
            p.blocks.push(Block::Rule);
            i += 1;
            continue;
        }
        if quote_depth < MAX_QUOTE_DEPTH && quote_content(line).is_some() {
            p.flush_all();
            let mut inner: Vec<&str> = Vec::new();
            while let Some(content) = lines.get(i).and_then(|l| quote_content(l)) {
                inner.push(content);
                i += 1;
            }
            p.blocks.push(Block::Quote(parse_blocks(&inner.join("\n"), quote_depth + 1)));
            continue;
        }
        if let Some((header, rows, next)) = table_at(&lines, i) {
            p.flush_all();
            p.blocks.push(Block::Table { header, rows });
            i = next;
            continue;
        }
        if let Some((indent, marker, content)) = list_item(line) {
            // An ordered list may interrupt a paragraph only when it starts at 1 (CommonMark),
            // so "in 2024. Then" inside a paragraph stays text.
            let interrupts =
                p.item.is_some() || p.para.is_empty() || matches!(marker, ListMarker::Bullet | ListMarker::Ordered(1));
            if interrupts {
                p.flush();
                let depth = p.list_depth(indent);
                p.item = Some((marker, depth, vec![content]));
                i += 1;
                continue;
            }
        }
        match &mut p.item {
            Some((_, _, item_lines)) => item_lines.push(line.trim()),
            None => {
                p.list_indents.clear();
                p.para.push(line.trim());
            }
        }
        i += 1;
    }
    p.flush_all();
    p.blocks
}

struct BlockParser<'a> {
    blocks: Vec<Block>,
    para: Vec<&'a str>,
    item: Option<(ListMarker, usize, Vec<&'a str>)>,
    /// Indentation of the open list levels, outermost first.
    list_indents: Vec<usize>,
}

impl BlockParser<'_> {
    /// Ends the current paragraph or list item (the list itself may continue).
    fn flush(&mut self) {
        if !self.para.is_empty() {
            self.blocks.push(Block::Paragraph(parse_inline(&self.para.join("\n"))));
            self.para.clear();
        }
        if let Some((marker, depth, lines)) = self.item.take() {
            self.blocks.push(Block::ListItem { marker, depth, content: parse_inline(&lines.join("\n")) });
        }
    }

    /// Ends the current paragraph, list item and list.
    fn flush_all(&mut self) {
        self.flush();
        self.list_indents.clear();
    }

    /// The nesting depth of a list item indented by `indent` columns: deeper than the previous
    /// level only when indented at least two columns more.
    fn list_depth(&mut self, indent: usize) -> usize {
        while self.list_indents.last().is_some_and(|&top| top > indent) {
            self.list_indents.pop();
        }
        match self.list_indents.last() {
            Some(&top) if indent < top + 2 => {}
            _ => self.list_indents.push(indent),
        }
        self.list_indents.len().saturating_sub(1)
    }
}

fn strip_indent(line: &str, indent: usize) -> &str {
    let spaces = line.bytes().take(indent).take_while(|&b| b == b' ' || b == b'\t').count();
    line.get(spaces..).unwrap_or(line)
}

fn leading_spaces(line: &str) -> usize {
    line.bytes().take_while(|&b| b == b' ').count()
}

/// An ATX heading line: its level and its text, closing `#`s removed.
pub(crate) fn heading(line: &str) -> Option<(u8, &str)> {
    if leading_spaces(line) > 3 {
        return None;
    }
    let t = line.trim_start_matches(' ');
    let level = t.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = t.get(level..)?;
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let content = rest.trim();
    let without_closing = content.trim_end_matches('#');
    let content = if without_closing.is_empty() {
        ""
    } else if without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end()
    } else {
        content
    };
    Some((u8::try_from(level).ok()?, content))
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    let Some(ch) = t.chars().next() else { return false };
    if !matches!(ch, '-' | '*' | '_') {
        return false;
    }
    let mut n = 0;
    for c in t.chars() {
        if c == ch {
            n += 1;
        } else if c != ' ' && c != '\t' {
            return false;
        }
    }
    n >= 3
}

fn quote_content(line: &str) -> Option<&str> {
    if leading_spaces(line) > 3 {
        return None;
    }
    let rest = line.trim_start_matches(' ').strip_prefix('>')?;
    Some(rest.strip_prefix([' ', '\t']).unwrap_or(rest))
}

fn list_item(line: &str) -> Option<(usize, ListMarker, &str)> {
    let t = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - t.len() + 3 * line[..line.len() - t.len()].matches('\t').count();
    let (marker, rest) = if let Some(rest) = t.strip_prefix(['-', '*', '+']) {
        (ListMarker::Bullet, rest)
    } else {
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let number: u32 = t.get(..digits)?.parse().ok()?;
        let rest = t.get(digits..)?.strip_prefix(['.', ')'])?;
        (ListMarker::Ordered(number), rest)
    };
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let content = rest.trim();
    if content.is_empty() {
        return None;
    }
    Some((indent, marker, content))
}

/// Splits a table row into cells: outer pipes dropped, `\|` kept inside a cell.
fn split_row(line: &str) -> Vec<&str> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") { &t[..t.len() - 1] } else { t };
    let mut cells = Vec::new();
    let mut start = 0;
    let bytes = t.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            cells.push(t[start..i].trim());
            start = i + 1;
        }
    }
    cells.push(t[start..].trim());
    cells
}

fn is_delimiter_cell(cell: &str) -> bool {
    let inner = cell.strip_prefix(':').unwrap_or(cell);
    let inner = inner.strip_suffix(':').unwrap_or(inner);
    !inner.is_empty() && inner.bytes().all(|b| b == b'-')
}

/// The cells of one table row.
pub(crate) type Cells = Vec<Vec<Inline>>;

/// A pipe table starting at line `i`: a header row with `|`, a delimiter row with as many
/// cells, then every following non-blank line containing `|`. Returns the cells and the index
/// of the first line after the table.
pub(crate) fn table_at(lines: &[&str], i: usize) -> Option<(Cells, Vec<Cells>, usize)> {
    let head = lines.get(i)?;
    let delim = lines.get(i + 1)?;
    if !head.contains('|') || !delim.contains(['|', '-']) {
        return None;
    }
    let head_cells = split_row(head);
    let delim_cells = split_row(delim);
    if head_cells.len() != delim_cells.len() || !delim_cells.iter().all(|c| is_delimiter_cell(c)) {
        return None;
    }
    let mut body: Vec<Vec<&str>> = Vec::new();
    let mut next = i + 2;
    while let Some(line) = lines.get(next) {
        if line.trim().is_empty() || !line.contains('|') {
            break;
        }
        body.push(split_row(line));
        next += 1;
    }
    let width = body.iter().map(Vec::len).chain([head_cells.len()]).max().unwrap_or(0);
    let to_cells = |row: &[&str]| -> Cells {
        (0..width).map(|k| row.get(k).map(|c| parse_inline(c)).unwrap_or_default()).collect()
    };
    Some((to_cells(&head_cells), body.iter().map(|r| to_cells(r)).collect(), next))
}

// ---------------------------------------------------------------------------------------------
// Inline structure: a lexer producing atoms and delimiter runs, then CommonMark-style delimiter
// matching with a stack, then a tree.

enum Tok {
    Text(String),
    Code(String),
    Link { text: Vec<Inline>, url: String },
    Url(String),
    Break,
    Delim { ch: char, count: usize, can_open: bool, can_close: bool },
}

fn parse_inline_with(text: &str, allow_links: bool) -> Vec<Inline> {
    let chars: Vec<char> = text.chars().collect();
    resolve(lex(&chars, allow_links))
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
}

fn run_len(c: &[char], i: usize, ch: char) -> usize {
    c.get(i..).map_or(0, |rest| rest.iter().take_while(|&&x| x == ch).count())
}

fn lex(c: &[char], allow_links: bool) -> Vec<Tok> {
    let brackets = if allow_links && c.contains(&'[') { match_brackets(c) } else { Vec::new() };
    let mut toks = Vec::new();
    let mut buf = String::new();
    let flush = |buf: &mut String, toks: &mut Vec<Tok>| {
        if !buf.is_empty() {
            toks.push(Tok::Text(std::mem::take(buf)));
        }
    };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            '\\' if c.get(i + 1).is_some_and(char::is_ascii_punctuation) => {
                buf.push(c[i + 1]);
                i += 2;
            }
            '`' => {
                let run = run_len(c, i, '`');
                if let Some(end) = find_code_close(c, i + run, run) {
                    flush(&mut buf, &mut toks);
                    toks.push(Tok::Code(code_content(&c[i + run..end])));
                    i = end + run;
                } else {
                    buf.extend(std::iter::repeat_n('`', run));
                    i += run;
                }
            }
            '[' | '!' if allow_links => {
                let open = if ch == '!' { i + 1 } else { i };
                match try_link(c, open, &brackets) {
                    Some((text, url, next)) => {
                        flush(&mut buf, &mut toks);
                        toks.push(Tok::Link { text, url });
                        i = next;
                    }
                    _ => {
                        buf.push(ch);
                        i += 1;
                    }
                }
            }
            '<' if allow_links => match bare_url(c, i + 1) {
                Some(end) if c.get(end) == Some(&'>') => {
                    flush(&mut buf, &mut toks);
                    toks.push(Tok::Url(c[i + 1..end].iter().collect()));
                    i = end + 1;
                }
                _ => {
                    buf.push(ch);
                    i += 1;
                }
            },
            'h' | 'H' if allow_links && (i == 0 || !c[i - 1].is_alphanumeric()) => match bare_url(c, i) {
                Some(end) => {
                    flush(&mut buf, &mut toks);
                    toks.push(Tok::Url(c[i..end].iter().collect()));
                    i = end;
                }
                None => {
                    buf.push(ch);
                    i += 1;
                }
            },
            '*' | '_' | '~' => {
                let run = run_len(c, i, ch);
                if ch == '~' && run != 2 {
                    buf.extend(std::iter::repeat_n('~', run));
                } else {
                    let prev = i.checked_sub(1).map(|p| c[p]);
                    let next = c.get(i + run).copied();
                    let (can_open, can_close) = flanking(ch, prev, next);
                    flush(&mut buf, &mut toks);
                    toks.push(Tok::Delim { ch, count: run, can_open, can_close });
                }
                i += run;
            }
            '\n' => {
                flush(&mut buf, &mut toks);
                toks.push(Tok::Break);
                i += 1;
            }
            _ => {
                buf.push(ch);
                i += 1;
            }
        }
    }
    flush(&mut buf, &mut toks);
    toks
}

/// Whether a delimiter run may open and may close emphasis. `_` follows CommonMark's stricter
/// rule, so `snake_case_name` is never emphasis. `*` and `~~` only need a non-space on the inner
/// side, so the `**Note:**text` and `**标题：**内容` that models write still work.
fn flanking(ch: char, prev: Option<char>, next: Option<char>) -> (bool, bool) {
    let prev_ws = prev.is_none_or(char::is_whitespace);
    let next_ws = next.is_none_or(char::is_whitespace);
    if ch != '_' {
        return (!next_ws, !prev_ws);
    }
    let prev_p = prev.is_some_and(is_punct);
    let next_p = next.is_some_and(is_punct);
    let left = !next_ws && (!next_p || prev_ws || prev_p);
    let right = !prev_ws && (!prev_p || next_ws || next_p);
    (left && (!right || prev_p), right && (!left || next_p))
}

/// The start of the backtick run of exactly `run` backticks closing a code span, from `from`.
fn find_code_close(c: &[char], from: usize, run: usize) -> Option<usize> {
    let mut j = from;
    while j < c.len() {
        if c[j] == '`' {
            let r = run_len(c, j, '`');
            if r == run {
                return Some(j);
            }
            j += r;
        } else {
            j += 1;
        }
    }
    None
}

/// Code span contents: line breaks become spaces, and one space is stripped from each side
/// when both sides have one (so `` ` `x` ` `` can show backticks).
fn code_content(inner: &[char]) -> String {
    let s: String = inner.iter().map(|&ch| if ch == '\n' { ' ' } else { ch }).collect();
    if s.len() >= 2 && s.starts_with(' ') && s.ends_with(' ') && !s.trim().is_empty() {
        s[1..s.len() - 1].to_owned()
    } else {
        s
    }
}

/// For each `[`, the index of its matching `]` (innermost pairing, escapes skipped).
fn match_brackets(c: &[char]) -> Vec<Option<usize>> {
    let mut matches = vec![None; c.len()];
    let mut stack = Vec::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => i += 1,
            '[' => stack.push(i),
            ']' => {
                if let Some(open) = stack.pop() {
                    matches[open] = Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    matches
}

/// A link `[text](url)` or `[text](url "title")` with its `[` at `open`: the text, the URL and
/// the index after the closing `)`.
fn try_link(c: &[char], open: usize, brackets: &[Option<usize>]) -> Option<(Vec<Inline>, String, usize)> {
    let close = (*brackets.get(open)?)?;
    if c.get(close + 1) != Some(&'(') {
        return None;
    }
    let start = close + 2;
    let mut j = start;
    let mut depth = 0usize;
    let url_end = loop {
        let ch = *c.get(j)?;
        if j - start > MAX_URL_CHARS {
            return None;
        }
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => break j,
            ')' => depth -= 1,
            '\\' => j += 1,
            _ if ch.is_whitespace() => break j,
            _ => {}
        }
        j += 1;
    };
    // Optional title after whitespace.
    let mut k = url_end;
    while c.get(k).is_some_and(|ch| ch.is_whitespace()) {
        k += 1;
    }
    if let Some(&quote @ ('"' | '\'')) = c.get(k) {
        let title_len = c.get(k + 1..)?.iter().take(MAX_URL_CHARS).position(|&ch| ch == quote)?;
        k += title_len + 2;
        while c.get(k).is_some_and(|ch| ch.is_whitespace()) {
            k += 1;
        }
    }
    if c.get(k) != Some(&')') {
        return None;
    }
    let raw: String = c[start..url_end].iter().collect();
    let url = raw.strip_prefix('<').and_then(|u| u.strip_suffix('>')).unwrap_or(&raw).to_owned();
    if url.is_empty() {
        return None;
    }
    let label: String = c[open + 1..close].iter().collect();
    Some((parse_inline_with(&label, false), url, k + 1))
}

/// A bare `http://` or `https://` URL starting at `i`: the index after it. Trailing
/// punctuation and unbalanced `)` are left out, as are emphasis markers around it.
fn bare_url(c: &[char], i: usize) -> Option<usize> {
    let matches_prefix =
        |p: &str| p.chars().enumerate().all(|(k, pc)| c.get(i + k).is_some_and(|&x| x.to_ascii_lowercase() == pc));
    let prefix = if matches_prefix("https://") {
        8
    } else if matches_prefix("http://") {
        7
    } else {
        return None;
    };
    let body = i + prefix;
    let mut j = body;
    while j < c.len() && j - i < MAX_URL_CHARS && !c[j].is_whitespace() && !matches!(c[j], '<' | '>' | '"' | '`') {
        j += 1;
    }
    let mut opens = c[body..j].iter().filter(|&&x| x == '(').count();
    let mut closes = c[body..j].iter().filter(|&&x| x == ')').count();
    while j > body {
        match c[j - 1] {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '*' | '_' | '~' => j -= 1,
            ')' if closes > opens => {
                closes -= 1;
                j -= 1;
            }
            '(' => {
                opens = opens.saturating_sub(1);
                j -= 1;
            }
            _ => break,
        }
    }
    (j > body).then_some(j)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emph {
    Bold,
    Italic,
    Strike,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    kind: Emph,
    id: usize,
    ch: char,
    n: usize,
}

impl Mark {
    fn literal(self) -> String {
        std::iter::repeat_n(self.ch, self.n).collect()
    }
}

fn delim_index(ch: char) -> usize {
    match ch {
        '*' => 0,
        '_' => 1,
        _ => 2,
    }
}

/// Matches delimiter runs (a stack of potential openers, nearest first, openers between a
/// matched pair discarded) and builds the tree. Unmatched delimiters become text.
fn resolve(toks: Vec<Tok>) -> Vec<Inline> {
    let len = toks.len();
    let mut remaining = vec![0usize; len];
    let mut opens: Vec<Vec<Mark>> = (0..len).map(|_| Vec::new()).collect();
    let mut closes: Vec<Vec<Mark>> = (0..len).map(|_| Vec::new()).collect();
    let mut stack: Vec<usize> = Vec::new();
    // Per delimiter character, the stack height below which no opener can match (CommonMark's
    // "openers bottom"), keeping the search linear on hostile input.
    let mut bottom = [0usize; 3];
    let mut next_id = 0;
    for t in 0..len {
        let Tok::Delim { ch, count, can_open, can_close } = toks[t] else { continue };
        remaining[t] = count;
        if can_close {
            let d = delim_index(ch);
            while remaining[t] > 0 {
                let from = bottom[d].min(stack.len());
                let found =
                    stack[from..].iter().rposition(|&o| matches!(toks[o], Tok::Delim { ch: oc, .. } if oc == ch));
                let Some(k) = found.map(|k| k + from) else {
                    bottom[d] = stack.len();
                    break;
                };
                let o = stack[k];
                stack.truncate(k + 1);
                let n = if ch == '~' || (remaining[o] >= 2 && remaining[t] >= 2) { 2 } else { 1 };
                let kind = match (ch, n) {
                    ('~', _) => Emph::Strike,
                    (_, 2) => Emph::Bold,
                    _ => Emph::Italic,
                };
                let mark = Mark { kind, id: next_id, ch, n };
                next_id += 1;
                opens[o].push(mark);
                closes[t].push(mark);
                remaining[o] -= n;
                remaining[t] -= n;
                if remaining[o] == 0 {
                    stack.pop();
                }
                for b in &mut bottom {
                    *b = (*b).min(stack.len());
                }
            }
        }
        if can_open && remaining[t] > 0 {
            stack.push(t);
        }
    }

    let mut tree = TreeBuilder { stack: vec![(None, Vec::new())], flattened: vec![false; next_id] };
    for (t, tok) in toks.into_iter().enumerate() {
        match tok {
            Tok::Delim { ch, .. } => {
                for &mark in &closes[t] {
                    tree.close(mark);
                }
                if remaining[t] > 0 {
                    tree.text(&std::iter::repeat_n(ch, remaining[t]).collect::<String>());
                }
                for &mark in opens[t].iter().rev() {
                    tree.open(mark);
                }
            }
            Tok::Text(s) => tree.text(&s),
            Tok::Code(s) => tree.node(Inline::Code(s)),
            Tok::Link { text, url } => tree.node(Inline::Link { text, url }),
            Tok::Url(u) => tree.node(Inline::Url(u)),
            Tok::Break => tree.node(Inline::LineBreak),
        }
    }
    tree.finish()
}

struct TreeBuilder {
    stack: Vec<(Option<Mark>, Vec<Inline>)>,
    flattened: Vec<bool>,
}

impl TreeBuilder {
    fn current(&mut self) -> &mut Vec<Inline> {
        if self.stack.is_empty() {
            self.stack.push((None, Vec::new()));
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last].1
    }

    fn text(&mut self, s: &str) {
        let cur = self.current();
        if let Some(Inline::Text(prev)) = cur.last_mut() {
            prev.push_str(s);
        } else {
            cur.push(Inline::Text(s.to_owned()));
        }
    }

    fn node(&mut self, node: Inline) {
        self.current().push(node);
    }

    fn open(&mut self, mark: Mark) {
        if self.stack.len() > MAX_INLINE_DEPTH {
            if let Some(f) = self.flattened.get_mut(mark.id) {
                *f = true;
            }
            self.text(&mark.literal());
        } else {
            self.stack.push((Some(mark), Vec::new()));
        }
    }

    fn close(&mut self, mark: Mark) {
        let top_matches = self.stack.last().is_some_and(|(m, _)| m.is_some_and(|m| m.id == mark.id));
        if self.flattened.get(mark.id).copied().unwrap_or(false) || !top_matches || self.stack.len() < 2 {
            self.text(&mark.literal());
            return;
        }
        if let Some((_, children)) = self.stack.pop() {
            let node = match mark.kind {
                Emph::Bold => Inline::Bold(children),
                Emph::Italic => Inline::Italic(children),
                Emph::Strike => Inline::Strike(children),
            };
            self.node(node);
        }
    }

    fn finish(mut self) -> Vec<Inline> {
        // Matching guarantees every opened container is closed; unwind defensively anyway.
        while self.stack.len() > 1 {
            if let Some((mark, children)) = self.stack.pop() {
                if let Some(mark) = mark {
                    self.text(&mark.literal());
                }
                for child in children {
                    match child {
                        Inline::Text(s) => self.text(&s),
                        other => self.node(other),
                    }
                }
            }
        }
        self.stack.pop().map(|(_, nodes)| nodes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Inline {
        Inline::Text(s.into())
    }

    #[test]
    fn emphasis_kinds() {
        assert_eq!(parse_inline("**b**"), vec![Inline::Bold(vec![t("b")])]);
        assert_eq!(parse_inline("__b__"), vec![Inline::Bold(vec![t("b")])]);
        assert_eq!(parse_inline("*i* _j_"), vec![Inline::Italic(vec![t("i")]), t(" "), Inline::Italic(vec![t("j")])]);
        assert_eq!(parse_inline("~~s~~"), vec![Inline::Strike(vec![t("s")])]);
        assert_eq!(parse_inline("~5 min"), vec![t("~5 min")]);
    }

    #[test]
    fn nested_bold_and_italic() {
        assert_eq!(
            parse_inline("**bold _it_ more**"),
            vec![Inline::Bold(vec![t("bold "), Inline::Italic(vec![t("it")]), t(" more")])]
        );
        assert_eq!(parse_inline("***both***"), vec![Inline::Italic(vec![Inline::Bold(vec![t("both")])])]);
    }

    #[test]
    fn underscores_inside_words_are_literal() {
        assert_eq!(parse_inline("call snake_case_name now"), vec![t("call snake_case_name now")]);
        assert_eq!(parse_inline("my__dunder__name x_1 _ y"), vec![t("my__dunder__name x_1 _ y")]);
    }

    #[test]
    fn unbalanced_delimiters_stay_literal() {
        assert_eq!(parse_inline("**not closed"), vec![t("**not closed")]);
        assert_eq!(parse_inline("a ** b"), vec![t("a ** b")]);
        assert_eq!(parse_inline("*a **b c"), vec![t("*a **b c")]);
        assert_eq!(parse_inline("**a* b"), vec![t("*"), Inline::Italic(vec![t("a")]), t(" b")]);
        assert_eq!(parse_inline("~~a ~b~~ ~~~"), vec![Inline::Strike(vec![t("a ~b")]), t(" ~~~")]);
    }

    #[test]
    fn models_bold_labels_with_punctuation() {
        assert_eq!(parse_inline("**Note:**text"), vec![Inline::Bold(vec![t("Note:")]), t("text")]);
        assert_eq!(parse_inline("**标题：**内容"), vec![Inline::Bold(vec![t("标题：")]), t("内容")]);
    }

    #[test]
    fn code_spans_are_literal() {
        assert_eq!(parse_inline("`**x**`"), vec![Inline::Code("**x**".into())]);
        assert_eq!(parse_inline("`` a`b ``"), vec![Inline::Code("a`b".into())]);
        assert_eq!(parse_inline("`open"), vec![t("`open")]);
    }

    #[test]
    fn links_and_urls() {
        assert_eq!(
            parse_inline("[the **docs**](https://x.y/a_(b))"),
            vec![Inline::Link {
                text: vec![t("the "), Inline::Bold(vec![t("docs")])],
                url: "https://x.y/a_(b)".into()
            }]
        );
        assert_eq!(
            parse_inline("see https://x.y/a_b_c."),
            vec![t("see "), Inline::Url("https://x.y/a_b_c".into()), t(".")]
        );
        assert_eq!(parse_inline("**https://x.y**"), vec![Inline::Bold(vec![Inline::Url("https://x.y".into())])]);
        assert_eq!(parse_inline("(https://x.y/p)"), vec![t("("), Inline::Url("https://x.y/p".into()), t(")")]);
        assert_eq!(parse_inline("<https://x.y>"), vec![Inline::Url("https://x.y".into())]);
        assert_eq!(parse_inline("[a] (b) [c]"), vec![t("[a] (b) [c]")]);
        assert_eq!(parse_inline("[t](u \"title\")"), vec![Inline::Link { text: vec![t("t")], url: "u".into() }]);
    }

    #[test]
    fn backslash_escapes() {
        assert_eq!(parse_inline(r"\*not\* \_x\_ \\"), vec![t(r"*not* _x_ \")]);
    }

    #[test]
    fn blocks() {
        let md = "# Title #\n\npara line\nsecond\n\n```rust\nfn x() {}\n```\n\n> quoted\n> more\n\n- a\n  - b\n1. one\n\n---";
        let blocks = parse(md);
        assert_eq!(blocks[0], Block::Heading { level: 1, content: vec![t("Title")] });
        assert_eq!(blocks[1], Block::Paragraph(vec![t("para line"), Inline::LineBreak, t("second")]));
        assert_eq!(blocks[2], Block::CodeBlock { lang: Some("rust".into()), code: "fn x() {}".into() });
        assert_eq!(blocks[3], Block::Quote(vec![Block::Paragraph(vec![t("quoted"), Inline::LineBreak, t("more")])]));
        assert_eq!(blocks[4], Block::ListItem { marker: ListMarker::Bullet, depth: 0, content: vec![t("a")] });
        assert_eq!(blocks[5], Block::ListItem { marker: ListMarker::Bullet, depth: 1, content: vec![t("b")] });
        assert_eq!(blocks[6], Block::ListItem { marker: ListMarker::Ordered(1), depth: 0, content: vec![t("one")] });
        assert_eq!(blocks[7], Block::Rule);
        assert_eq!(blocks.len(), 8);
    }

    #[test]
    fn not_quite_blocks_are_text() {
        assert_eq!(parse("#hashtag"), vec![Block::Paragraph(vec![t("#hashtag")])]);
        assert_eq!(parse("-5 degrees"), vec![Block::Paragraph(vec![t("-5 degrees")])]);
        assert_eq!(
            parse("It was\n2024. Then"),
            vec![Block::Paragraph(vec![t("It was"), Inline::LineBreak, t("2024. Then")])]
        );
        assert_eq!(parse("```\nunclosed"), vec![Block::CodeBlock { lang: None, code: "unclosed".into() }]);
    }

    #[test]
    fn indented_fence_in_a_list() {
        let blocks = parse("1. Run:\n   ```sh\n   make\n     indented\n   ```\n2. Done");
        assert_eq!(blocks[1], Block::CodeBlock { lang: Some("sh".into()), code: "make\n  indented".into() });
        assert_eq!(blocks[2], Block::ListItem { marker: ListMarker::Ordered(2), depth: 0, content: vec![t("Done")] });
    }

    #[test]
    fn tables() {
        let blocks = parse("| a | **b** |\n|---|:-:|\n| 1 | 2 |\n| 3 |\n\nafter");
        let Block::Table { header, rows } = &blocks[0] else { panic!("{blocks:?}") };
        assert_eq!(table_to_text(header, rows), "a | b\n- | -\n1 | 2\n3 |");
        assert_eq!(blocks[1], Block::Paragraph(vec![t("after")]));
        let wide = parse("|名前|x|\n|-|-|\n|ab|y|");
        let Block::Table { header, rows } = &wide[0] else { panic!("{wide:?}") };
        assert_eq!(table_to_text(header, rows), "名前 | x\n---- | -\nab   | y");
    }

    #[test]
    fn url_schemes() {
        let s = &["http", "https", "tg"];
        assert!(link_allowed("https://x.y/a?b=1&c", s));
        assert!(link_allowed("HTTP://x.y", s));
        assert!(link_allowed("tg://user?id=1", s));
        for bad in
            ["javascript:alert(1)", "JavaScript:x", "data:text/html,x", "/relative", "https://", "http:x", "ftp://x"]
        {
            assert!(!link_allowed(bad, s), "{bad}");
        }
        assert!(!link_allowed("https://x.y/\u{0}", s));
    }

    #[test]
    fn deep_nesting_is_capped() {
        let quotes = ">".repeat(10_000);
        let _ = parse(&quotes);
        let emph: String = (0..5_000).map(|i| if i % 2 == 0 { "*_" } else { "_*" }).collect();
        let _ = parse_inline(&format!("{emph}x{}", emph.chars().rev().collect::<String>()));
        let brackets = format!("{}x{}", "[".repeat(5_000), "](u)".repeat(5_000));
        let _ = parse_inline(&brackets);
    }
}
