//! A pre-`dlopen` sanity check of ELF files. `dlopen` maps segments without checking that
//! the file actually contains them: a truncated library (a half-finished copy) maps pages
//! past the end of the file, and touching them while relocating raises SIGBUS — the whole
//! server would die. So before loading, every loadable segment and the section header table
//! (the end of the file, where linkers put it) must lie inside the file.

const PT_LOAD: u32 = 1;

fn read_u16(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let v: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le { u16::from_le_bytes(v) } else { u16::from_be_bytes(v) })
}

fn read_u32(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let v: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(v) } else { u32::from_be_bytes(v) })
}

fn read_u64(b: &[u8], at: usize, le: bool) -> Option<u64> {
    let v: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(if le { u64::from_le_bytes(v) } else { u64::from_be_bytes(v) })
}

/// Checks that `bytes` is a complete ELF file: every `PT_LOAD` segment's file range lies
/// inside it. Files that are not ELF at all pass through (dlopen explains those itself).
pub(crate) fn check_complete(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Ok(());
    }
    let truncated = || format!("truncated ELF file ({} bytes): its headers are incomplete", bytes.len());
    let is64 = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class".into()),
    };
    let le = match bytes.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("unknown ELF byte order".into()),
    };
    let (phoff, phentsize, phnum) = if is64 {
        (read_u64(bytes, 0x20, le), read_u16(bytes, 0x36, le), read_u16(bytes, 0x38, le))
    } else {
        (read_u32(bytes, 0x1c, le).map(u64::from), read_u16(bytes, 0x2a, le), read_u16(bytes, 0x2c, le))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Err(truncated());
    };
    check_section_headers(bytes, is64, le)?;
    for i in 0..u64::from(phnum) {
        let at = phoff.checked_add(i * u64::from(phentsize)).ok_or_else(truncated)?;
        let at = usize::try_from(at).map_err(|_| truncated())?;
        let (p_type, offset, filesz) = if is64 {
            (read_u32(bytes, at, le), read_u64(bytes, at + 8, le), read_u64(bytes, at + 32, le))
        } else {
            (
                read_u32(bytes, at, le),
                read_u32(bytes, at + 4, le).map(u64::from),
                read_u32(bytes, at + 16, le).map(u64::from),
            )
        };
        let (Some(p_type), Some(offset), Some(filesz)) = (p_type, offset, filesz) else {
            return Err(truncated());
        };
        if p_type == PT_LOAD {
            let end = offset.checked_add(filesz).ok_or_else(truncated)?;
            if end > bytes.len() as u64 {
                return Err(format!(
                    "truncated ELF file: a loadable segment ends at byte {end} but the file has {} bytes \
                     (still being copied?)",
                    bytes.len()
                ));
            }
        }
    }
    Ok(())
}

/// The section header table (where linkers put it: at the end of the file) must lie inside
/// the file: a copy cut short after its loadable segments (in the debug sections that follow
/// them) would load, and be replaced again when the copy completes.
fn check_section_headers(bytes: &[u8], is64: bool, le: bool) -> Result<(), String> {
    let (shoff, shentsize, shnum) = if is64 {
        (read_u64(bytes, 0x28, le), read_u16(bytes, 0x3a, le), read_u16(bytes, 0x3c, le))
    } else {
        (read_u32(bytes, 0x20, le).map(u64::from), read_u16(bytes, 0x2e, le), read_u16(bytes, 0x30, le))
    };
    let (Some(shoff), Some(shentsize), Some(shnum)) = (shoff, shentsize, shnum) else {
        return Err(format!("truncated ELF file ({} bytes): its headers are incomplete", bytes.len()));
    };
    if shoff == 0 {
        return Ok(()); // no section headers
    }
    let end = u64::from(shentsize).checked_mul(u64::from(shnum)).and_then(|size| shoff.checked_add(size));
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(()),
        _ => Err(format!(
            "truncated ELF file: its section headers end past its {} bytes (still being copied?)",
            bytes.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_library_passes_and_a_truncated_one_does_not() {
        let exe = std::fs::read("/proc/self/exe").unwrap_or_default();
        assert!(exe.len() > 4096);
        assert_eq!(check_complete(&exe), Ok(()));
        let cut = &exe[..8192];
        let err = check_complete(cut).expect_err("a truncated file must be refused");
        assert!(err.contains("truncated ELF file"), "{err}");
        assert!(check_complete(&exe[..40]).is_err());
        let all_but_the_tail = &exe[..exe.len() - 16];
        let err = check_complete(all_but_the_tail).expect_err("cut in its section headers");
        assert!(err.contains("section headers"), "{err}");
        assert_eq!(check_complete(b"not an ELF file"), Ok(()));
    }
}
