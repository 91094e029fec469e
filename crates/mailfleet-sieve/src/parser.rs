//! The generic Sieve syntax tree (RFC 5228 section 8.2): commands, tests and arguments, before
//! any command is known. `compile` turns it into the typed program.

use crate::CompileError;
use crate::lexer::{Tok, Token};

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Tag(String),
    Number(u64),
    /// A single string (`list == false`) or a bracketed string list.
    Strings {
        values: Vec<String>,
        list: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub line: u32,
    /// Each argument with the line it starts on.
    pub args: Vec<(Arg, u32)>,
    pub tests: Vec<Node>,
    /// Whether the tests were written as a parenthesised list.
    pub test_list: bool,
    /// A command's block (`None` for `;`); always `None` for tests.
    pub block: Option<Vec<Node>>,
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    max_nesting: usize,
}

fn err(line: u32, message: impl Into<String>) -> CompileError {
    CompileError {
        line,
        message: message.into(),
    }
}

pub(crate) fn parse(toks: &[Token], max_nesting: usize) -> Result<Vec<Node>, CompileError> {
    let mut p = Parser {
        toks,
        pos: 0,
        max_nesting,
    };
    let cmds = p.commands(0)?;
    if let Some(t) = p.peek() {
        return Err(err(t.line, "unexpected '}'"));
    }
    Ok(cmds)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map_or(1, |t| t.line)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn commands(&mut self, depth: usize) -> Result<Vec<Node>, CompileError> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            if t.tok == Tok::RBrace {
                break;
            }
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<Node, CompileError> {
        let Some(t) = self.next() else {
            return Err(err(self.last_line(), "expected a command"));
        };
        let Tok::Ident(name) = t.tok else {
            return Err(err(
                t.line,
                format!("expected a command, found {}", describe(&t.tok)),
            ));
        };
        let mut node = self.arguments(name, t.line, depth)?;
        match self.next() {
            Some(Token {
                tok: Tok::Semicolon,
                ..
            }) => {}
            Some(Token {
                tok: Tok::LBrace,
                line,
            }) => {
                if depth + 1 > self.max_nesting {
                    return Err(err(line, "blocks nested too deeply"));
                }
                let block = self.commands(depth + 1)?;
                match self.next() {
                    Some(Token {
                        tok: Tok::RBrace, ..
                    }) => {}
                    _ => return Err(err(line, "block without its closing '}'")),
                }
                node.block = Some(block);
            }
            Some(t) => {
                return Err(err(
                    t.line,
                    format!(
                        "expected ';' or '{{' after command {}, found {}",
                        node.name,
                        describe(&t.tok)
                    ),
                ));
            }
            None => {
                return Err(err(
                    self.last_line(),
                    format!("missing ';' after command {}", node.name),
                ));
            }
        }
        Ok(node)
    }

    fn arguments(&mut self, name: String, line: u32, depth: usize) -> Result<Node, CompileError> {
        let mut node = Node {
            name,
            line,
            args: Vec::new(),
            tests: Vec::new(),
            test_list: false,
            block: None,
        };
        while let Some(t) = self.peek() {
            let tline = t.line;
            match &t.tok {
                Tok::Tag(tag) => {
                    node.args.push((Arg::Tag(tag.clone()), tline));
                    self.pos += 1;
                }
                Tok::Number(n) => {
                    node.args.push((Arg::Number(*n), tline));
                    self.pos += 1;
                }
                Tok::Str(s) => {
                    node.args.push((
                        Arg::Strings {
                            values: vec![s.clone()],
                            list: false,
                        },
                        tline,
                    ));
                    self.pos += 1;
                }
                Tok::LBracket => {
                    self.pos += 1;
                    let values = self.string_list(tline)?;
                    node.args.push((Arg::Strings { values, list: true }, tline));
                }
                _ => break,
            }
        }
        match self.peek().map(|t| (t.tok.clone(), t.line)) {
            Some((Tok::LParen, pline)) => {
                self.pos += 1;
                if depth + 1 > self.max_nesting {
                    return Err(err(pline, "tests nested too deeply"));
                }
                node.test_list = true;
                loop {
                    node.tests.push(self.test(depth + 1)?);
                    match self.next() {
                        Some(Token {
                            tok: Tok::Comma, ..
                        }) => continue,
                        Some(Token {
                            tok: Tok::RParen, ..
                        }) => break,
                        Some(t) => {
                            return Err(err(
                                t.line,
                                format!(
                                    "expected ',' or ')' in a test list, found {}",
                                    describe(&t.tok)
                                ),
                            ));
                        }
                        None => return Err(err(pline, "test list without its closing ')'")),
                    }
                }
            }
            Some((Tok::Ident(_), tline)) => {
                if depth + 1 > self.max_nesting {
                    return Err(err(tline, "tests nested too deeply"));
                }
                node.tests.push(self.test(depth + 1)?);
            }
            _ => {}
        }
        Ok(node)
    }

    fn test(&mut self, depth: usize) -> Result<Node, CompileError> {
        match self.next() {
            Some(Token {
                tok: Tok::Ident(name),
                line,
            }) => self.arguments(name, line, depth),
            Some(t) => Err(err(
                t.line,
                format!("expected a test, found {}", describe(&t.tok)),
            )),
            None => Err(err(self.last_line(), "expected a test")),
        }
    }

    fn string_list(&mut self, line: u32) -> Result<Vec<String>, CompileError> {
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token {
                    tok: Tok::Str(s), ..
                }) => values.push(s),
                Some(t) => {
                    return Err(err(
                        t.line,
                        format!(
                            "expected a string in a string list, found {}",
                            describe(&t.tok)
                        ),
                    ));
                }
                None => return Err(err(line, "string list without its closing ']'")),
            }
            match self.next() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => {}
                Some(Token {
                    tok: Tok::RBracket, ..
                }) => return Ok(values),
                Some(t) => {
                    return Err(err(
                        t.line,
                        format!(
                            "expected ',' or ']' in a string list, found {}",
                            describe(&t.tok)
                        ),
                    ));
                }
                None => return Err(err(line, "string list without its closing ']'")),
            }
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s}"),
        Tok::Tag(s) => format!("tag :{s}"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(_) => "a string".to_string(),
        Tok::LBracket => "'['".to_string(),
        Tok::RBracket => "']'".to_string(),
        Tok::LParen => "'('".to_string(),
        Tok::RParen => "')'".to_string(),
        Tok::LBrace => "'{'".to_string(),
        Tok::RBrace => "'}'".to_string(),
        Tok::Comma => "','".to_string(),
        Tok::Semicolon => "';'".to_string(),
    }
}
