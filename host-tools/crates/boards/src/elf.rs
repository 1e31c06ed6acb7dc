//! What a binary was built for, read from its ELF headers: the architecture, whether it is
//! stripped, its program interpreter and the newest glibc symbol version it needs. Enough to
//! refuse bundling an x86 binary for a Pi, or a binary whose C library the board lacks.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct ElfInfo {
    /// As Rust names it (`std::env::consts::ARCH`): aarch64, arm, x86_64, ...
    pub arch: String,
    pub bits: u8,
    /// No `.symtab` section.
    pub stripped: bool,
    /// PT_INTERP, e.g. /lib/ld-linux-aarch64.so.1; `None` for static binaries.
    pub interpreter: Option<String>,
    /// The newest `GLIBC_x.y` the binary's dynamic symbols ask for.
    pub max_glibc: Option<(u32, u32)>,
}

const SHT_SYMTAB: u32 = 2;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const PT_INTERP: u32 = 3;

pub fn read(path: &Path) -> Result<ElfInfo, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    parse(&bytes)
}

/// Little-endian reads that fail instead of panicking on a truncated file.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn slice(&self, at: usize, len: usize) -> Result<&[u8], String> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or_else(|| "truncated ELF file".to_string())
    }
    fn u16(&self, at: usize) -> Result<u16, String> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32, String> {
        let b = self.slice(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, at: usize) -> Result<u64, String> {
        let b = self.slice(at, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// An address-sized field: 4 bytes in ELF32, 8 in ELF64.
    fn word(&self, at: usize, wide: bool) -> Result<usize, String> {
        let v = if wide {
            self.u64(at)?
        } else {
            self.u32(at)? as u64
        };
        usize::try_from(v).map_err(|_| "ELF offset out of range".to_string())
    }
    fn cstr(&self, at: usize) -> Result<String, String> {
        let rest = self.0.get(at..).ok_or("string offset out of range")?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
}

pub fn parse(data: &[u8]) -> Result<ElfInfo, String> {
    let b = Bytes(data);
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF executable".into());
    }
    // The identification bytes, read before indexing them (a 4-byte file must not panic).
    b.slice(0, 20)?;
    let wide = match data[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    if data[5] != 1 {
        return Err("big-endian ELF: no board edgeslim supports is big-endian".into());
    }
    let machine = b.u16(18)?;
    let arch = match machine {
        3 => "x86",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv64",
        m => return Err(format!("unknown ELF machine {m}")),
    }
    .to_string();
    let (phoff, phentsize, phnum) = if wide {
        (b.word(0x20, true)?, b.u16(0x36)?, b.u16(0x38)?)
    } else {
        (b.word(0x1C, false)?, b.u16(0x2A)?, b.u16(0x2C)?)
    };
    let (shoff, shentsize, shnum) = if wide {
        (b.word(0x28, true)?, b.u16(0x3A)?, b.u16(0x3C)?)
    } else {
        (b.word(0x20, false)?, b.u16(0x2E)?, b.u16(0x30)?)
    };

    let mut interpreter = None;
    for i in 0..phnum as usize {
        let ph = phoff + i * phentsize as usize;
        if b.u32(ph)? == PT_INTERP {
            let (off, size) = if wide {
                (b.word(ph + 8, true)?, b.word(ph + 32, true)?)
            } else {
                (b.word(ph + 4, false)?, b.word(ph + 16, false)?)
            };
            let raw = b.slice(off, size)?;
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            interpreter = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
        }
    }

    let mut sections = Vec::new();
    for i in 0..shnum as usize {
        let sh = shoff + i * shentsize as usize;
        let s = if wide {
            Section {
                kind: b.u32(sh + 4)?,
                offset: b.word(sh + 24, true)?,
                size: b.word(sh + 32, true)?,
                link: b.u32(sh + 40)?,
            }
        } else {
            Section {
                kind: b.u32(sh + 4)?,
                offset: b.word(sh + 16, false)?,
                size: b.word(sh + 20, false)?,
                link: b.u32(sh + 24)?,
            }
        };
        sections.push(s);
    }
    let stripped = !sections.iter().any(|s| s.kind == SHT_SYMTAB);
    let max_glibc = match sections.iter().find(|s| s.kind == SHT_GNU_VERNEED) {
        Some(vn) => {
            let strtab = sections
                .get(vn.link as usize)
                .ok_or("version section links to no string table")?;
            glibc_versions(&b, vn, strtab)?.into_iter().max()
        }
        None => None,
    };
    Ok(ElfInfo {
        arch,
        bits: if wide { 64 } else { 32 },
        stripped,
        interpreter,
        max_glibc,
    })
}

/// Walk the Verneed/Vernaux lists (same layout in ELF32 and ELF64) for `GLIBC_x.y` names.
fn glibc_versions(b: &Bytes, vn: &Section, strtab: &Section) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    let end = vn.offset + vn.size;
    let mut need = vn.offset;
    // Bounded walks: a corrupt `next` must not loop forever.
    for _ in 0..1024 {
        if need + 16 > end {
            break;
        }
        let count = b.u16(need + 2)?;
        let mut aux = need + b.u32(need + 8)? as usize;
        for _ in 0..count {
            let name = b.cstr(strtab.offset + b.u32(aux + 8)? as usize)?;
            if let Some(v) = name.strip_prefix("GLIBC_").and_then(parse_version) {
                out.push(v);
            } else if name == "GLIBC_ABI_DT_RELR" {
                // RELR-packed relocations load on glibc 2.36 and newer only.
                out.push((2, 36));
            }
            let next = b.u32(aux + 12)? as usize;
            if next == 0 {
                break;
            }
            aux += next;
        }
        let next = b.u32(need + 12)? as usize;
        if next == 0 {
            break;
        }
        need += next;
    }
    Ok(out)
}

/// "2.34" -> (2, 34); "2.3.4" -> (2, 3); "PRIVATE" -> None.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let info = read(&exe).unwrap();
        assert_eq!(info.arch, std::env::consts::ARCH);
        assert_eq!(info.bits as usize, 8 * std::mem::size_of::<usize>());
        // Test binaries keep their symbols; glibc builds ask for some GLIBC_2.x.
        assert!(!info.stripped);
        if cfg!(target_env = "gnu") {
            let (major, minor) = info.max_glibc.unwrap();
            assert!(major == 2 && minor >= 2, "{major}.{minor}");
            assert!(info.interpreter.unwrap().contains("ld-linux"));
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(parse(b"not elf at all").is_err());
        assert!(parse(b"\x7fELF\x02\x01").is_err());
        assert!(parse(b"\x7fELF").is_err());
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 2;
        head[5] = 1;
        head[18] = 183;
        head[0x28] = 0xff; // section headers far beyond the end
        head[0x3C] = 3;
        assert!(parse(&head).is_err());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.34"), Some((2, 34)));
        assert_eq!(parse_version("2.3.4"), Some((2, 3)));
        assert_eq!(parse_version("PRIVATE"), None);
    }
}
