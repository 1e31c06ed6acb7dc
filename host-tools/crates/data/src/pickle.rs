//! A restricted unpickler: the part of Python's pickle format that PyTorch checkpoints and NumPy
//! arrays use, read into plain [`Value`]s. Nothing is ever executed: a `GLOBAL` is accepted only
//! when the caller lists it, and stays a name ([`Value::Global`]); calls (`REDUCE`) and object
//! builds (`BUILD`) stay data ([`Value::Call`], [`Value::Build`]) for the caller to interpret.
//! Every length is checked against the bytes present before anything is allocated, and nesting
//! is capped, so a hostile file is an error naming the byte offset, never a crash.

use crate::{Error, Result};

/// Deepest nesting of tuples, lists and dicts accepted (checkpoints nest a handful of levels).
const MAX_DEPTH: usize = 64;

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as its little-endian two's-complement bytes.
    Long(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, one of the globals the caller allowed.
    Global {
        module: String,
        name: String,
    },
    /// `func(*args)` (REDUCE), not evaluated.
    Call {
        func: Box<Value>,
        args: Vec<Value>,
    },
    /// `obj.__setstate__(state)` (BUILD), not evaluated.
    Build {
        obj: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id (BINPERSID): PyTorch's references to tensor storages.
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a tuple or a list.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// `Global { module, name }` as `module.name`.
    pub fn global_name(&self) -> Option<String> {
        match self {
            Value::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }
}

/// Where the unpickling stopped and what it read.
pub struct Unpickled {
    pub value: Value,
    /// Bytes of the input the pickle took (legacy PyTorch files hold several in a row).
    pub consumed: usize,
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Values with their nesting depth.
    stack: Vec<(Value, usize)>,
    marks: Vec<usize>,
    memo: Vec<Option<(Value, usize)>>,
    allowed: &'a [(&'a str, &'a str)],
    what: &'a str,
}

impl<'a> Machine<'a> {
    fn err(&self, why: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{}: pickle at byte {}: {why}", self.what, self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err(format!("needs {n} more bytes; the data ends first")))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<usize> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| self.err("a length beyond memory"))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("a GLOBAL name without its end of line"))?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.err("a GLOBAL name that is not UTF-8"))?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("a string that is not UTF-8"))
    }

    fn push(&mut self, v: Value, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.stack.push((v, depth));
        Ok(())
    }

    fn pop(&mut self) -> Result<(Value, usize)> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("a value is taken from below a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err("the stack is empty"))
    }

    /// The values above the last MARK, and their deepest nesting.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, usize)> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("a MARK is missing"))?;
        let items: Vec<(Value, usize)> = self.stack.split_off(m);
        let depth = items.iter().map(|(_, d)| *d).max().unwrap_or(0);
        Ok((items.into_iter().map(|(v, _)| v).collect(), depth))
    }

    fn top_mut(&mut self) -> Result<&mut (Value, usize)> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("the stack is empty"));
        }
        let pos = self.pos;
        self.stack
            .last_mut()
            .ok_or_else(|| Error::Invalid(format!("pickle at byte {pos}: the stack is empty")))
    }

    fn memo_put(&mut self, i: usize) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("nothing to memoise"))?;
        // Indices are the writer's; a sane file counts up from 0, so the table grows by one.
        if i > self.memo.len() + 1_000_000 {
            return Err(self.err(format!(
                "memo index {i} far beyond the {} entries",
                self.memo.len()
            )));
        }
        if self.memo.len() <= i {
            self.memo.resize(i + 1, None);
        }
        self.memo[i] = Some(top);
        Ok(())
    }

    fn memo_get(&mut self, i: usize) -> Result<()> {
        let (v, d) = self
            .memo
            .get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| self.err(format!("memo entry {i} was never stored")))?;
        self.push(v, d)
    }

    fn global(&mut self, module: String, name: String) -> Result<()> {
        if !self.allowed.iter().any(|(m, n)| *m == module && *n == name) {
            return Err(self.err(format!(
                "refusing the global {module}.{name}: only the types a checkpoint holds are read \
                 (allowed here: {})",
                self.allowed
                    .iter()
                    .map(|(m, n)| format!("{m}.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.push(Value::Global { module, name }, 0)
    }

    fn run(mut self) -> Result<Unpickled> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(format!("pickle protocol {v} is newer than 5")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let (value, _) = self.pop()?;
                    return Ok(Unpickled {
                        value,
                        consumed: self.pos,
                    });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.push(Value::Dict(Vec::new()), 1)?,
                b']' => self.push(Value::List(Vec::new()), 1)?,
                b')' => self.push(Value::Tuple(Vec::new()), 1)?,
                b't' => {
                    let (items, d) = self.pop_mark()?;
                    self.push(Value::Tuple(items), d + 1)?;
                }
                0x85..=0x87 => {
                    // TUPLE1..3
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    let mut depth = 0;
                    for _ in 0..n {
                        let (v, d) = self.pop()?;
                        depth = depth.max(d);
                        items.push(v);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items), depth + 1)?;
                }
                b'a' | b'e' => {
                    // APPEND, APPENDS
                    let (items, d) = if op == b'a' {
                        let (v, d) = self.pop()?;
                        (vec![v], d)
                    } else {
                        self.pop_mark()?
                    };
                    let pos = self.pos;
                    let top = self.top_mut()?;
                    top.1 = top.1.max(d + 1);
                    match &mut top.0 {
                        Value::List(l) => l.extend(items),
                        _ => {
                            return Err(Error::Invalid(format!(
                                "pickle at byte {pos}: APPEND to something that is not a list"
                            )))
                        }
                    }
                }
                b's' | b'u' => {
                    // SETITEM, SETITEMS
                    let (items, d) = if op == b's' {
                        let (v, dv) = self.pop()?;
                        let (k, dk) = self.pop()?;
                        (vec![k, v], dv.max(dk))
                    } else {
                        self.pop_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with a key and no value"));
                    }
                    let pos = self.pos;
                    let top = self.top_mut()?;
                    top.1 = top.1.max(d + 1);
                    let target = match &mut top.0 {
                        Value::Dict(m) => m,
                        // collections.OrderedDict() is a Call until interpreted; keep its items.
                        Value::Call { args, .. } => {
                            if !matches!(args.last(), Some(Value::Dict(_))) {
                                args.push(Value::Dict(Vec::new()));
                            }
                            let Some(Value::Dict(m)) = args.last_mut() else {
                                return Err(Error::Invalid(format!(
                                    "pickle at byte {pos}: SETITEM target lost"
                                )));
                            };
                            m
                        }
                        _ => {
                            return Err(Error::Invalid(format!(
                                "pickle at byte {pos}: SETITEM on something that is not a dict"
                            )))
                        }
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        target.push((k, v));
                    }
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    // MEMOIZE
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'J' => {
                    let b = self.take(4)?;
                    self.push(
                        Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
                        0,
                    )?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64), 0)?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64), 0)?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        self.push(Value::Long(b.to_vec()), 0)?;
                        continue;
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v), 0)?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)), 0)?;
                }
                b'N' => self.push(Value::None, 0)?,
                0x88 => self.push(Value::Bool(true), 0)?,
                0x89 => self.push(Value::Bool(false), 0)?,
                b'X' => {
                    let n = self.u32()?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s), 0)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s), 0)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s), 0)?;
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()?,
                        b'C' => self.u8()? as usize,
                        _ => self.u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b), 0)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let (name, _) = self.pop()?;
                    let (module, _) = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(m, n)?,
                        _ => return Err(self.err("STACK_GLOBAL without two strings")),
                    }
                }
                b'R' => {
                    let (args, da) = self.pop()?;
                    let (func, df) = self.pop()?;
                    let args = match args {
                        Value::Tuple(a) => a,
                        _ => return Err(self.err("REDUCE arguments that are not a tuple")),
                    };
                    self.push(
                        Value::Call {
                            func: Box::new(func),
                            args,
                        },
                        da.max(df) + 1,
                    )?;
                }
                b'b' => {
                    let (state, ds) = self.pop()?;
                    let (obj, dobj) = self.pop()?;
                    self.push(
                        Value::Build {
                            obj: Box::new(obj),
                            state: Box::new(state),
                        },
                        ds.max(dobj) + 1,
                    )?;
                }
                b'Q' => {
                    let (id, d) = self.pop()?;
                    self.push(Value::PersistentId(Box::new(id)), d + 1)?;
                }
                other => {
                    return Err(
                        self.err(format!("opcode 0x{other:02x} is not one a checkpoint uses"))
                    )
                }
            }
        }
    }
}

/// Read one pickle from the start of `bytes`; `allowed` lists the `(module, name)` globals it
/// may name; `what` names the source in errors (a file, an archive member).
pub fn unpickle(bytes: &[u8], allowed: &[(&str, &str)], what: &str) -> Result<Unpickled> {
    Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        allowed,
        what,
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_protocol_2_ordered_dict_of_tuples() {
        // collections.OrderedDict() then {'a': (1, -2, True), 'b': 'x'} set item by item, as
        // torch.save writes a state dict (bytes written by hand, opcode by opcode).
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\nq\x00)R");
        p.extend(b"q\x01(X\x01\x00\x00\x00aK\x01\x8a\x01\xfe\x88\x87X\x01\x00\x00\x00bX\x01\x00\x00\x00xu.");
        let allowed = [("collections", "OrderedDict")];
        let u = unpickle(&p, &allowed, "test").unwrap();
        assert_eq!(u.consumed, p.len());
        let Value::Call { func, args } = u.value else {
            panic!("a call")
        };
        assert_eq!(
            func.global_name().as_deref(),
            Some("collections.OrderedDict")
        );
        assert_eq!(
            args[0],
            Value::Dict(vec![
                (
                    Value::Str("a".into()),
                    Value::Tuple(vec![Value::Int(1), Value::Int(-2), Value::Bool(true)])
                ),
                (Value::Str("b".into()), Value::Str("x".into())),
            ])
        );
    }

    #[test]
    fn hostile_pickles_are_errors_naming_the_offset() {
        let allowed = [("collections", "OrderedDict")];
        // The classic: os.system("...").
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.";
        let e = unpickle(evil, &allowed, "evil.pth")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("evil.pth") && e.contains("refusing the global os.system"),
            "{e}"
        );
        for (bytes, says) in [
            (&b"\x80\x02X\xff\xff\xff\x7f"[..], "more bytes"),
            (&b"\x80\x02h\x05."[..], "never stored"),
            (&b"\x80\x02t."[..], "MARK is missing"),
            (&b"\x80\x02."[..], "stack is empty"),
            (&b"\x80\x02\xfe"[..], "opcode 0xfe"),
            (&b"\x80\x09."[..], "protocol 9"),
        ] {
            let e = unpickle(bytes, &allowed, "f").err().unwrap().to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
        // Nesting a million tuples deep is refused, not a stack overflow.
        let mut deep = vec![0x80, 2, b'N'];
        deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        deep.push(b'.');
        let e = unpickle(&deep, &allowed, "f").err().unwrap().to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }
}
