//! One pass over `.debug_info`: every DIE becomes a small fixed record in an arena,
//! with its references (type, abstract origin) resolved to arena indices, and the
//! address ranges of subprograms and inlined subroutines collected on the way.

use gimli::{constants as dw, AttributeValue, DwTag};

use crate::load::R;
use crate::Error;

/// Index of a DIE in [`Dies::dies`].
pub type DieId = u32;
pub const NONE: DieId = u32::MAX;

pub const EXTERNAL: u8 = 1;
pub const DECLARATION: u8 = 2;
/// A variable with a fixed address (`DW_OP_addr`): static storage.
pub const STATIC_ADDR: u8 = 4;
/// `DW_AT_inline`: an abstract instance, a template for inlined copies.
pub const INLINE: u8 = 8;
/// Has code: low_pc or ranges.
pub const HAS_PC: u8 = 16;

#[derive(Clone, Debug)]
pub struct Die<'a> {
    pub tag: DwTag,
    pub flags: u8,
    pub unit: u16,
    pub parent: DieId,
    /// One past the last DIE of this DIE's subtree.
    pub end: DieId,
    pub name: Option<&'a str>,
    /// `DW_AT_type`.
    pub ty: DieId,
    /// `DW_AT_abstract_origin` or `DW_AT_specification`.
    pub origin: DieId,
    pub byte_size: Option<u64>,
    pub bit_size: Option<u64>,
    /// Members: offset from the start of the containing type, in bits.
    pub bit_offset: Option<u64>,
    /// Enumerators: value; subranges: element count.
    pub value: Option<i64>,
    pub decl_file: u32,
    pub decl_line: u32,
    /// Lowest code address (synthetic), for subprograms.
    pub low_pc: Option<u64>,
    /// Inlined subroutines: the call site.
    pub call_file: u32,
    pub call_line: u32,
}

impl Die<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// An address range of a subprogram or inlined subroutine.
#[derive(Clone, Copy, Debug)]
pub struct PcRange {
    pub start: u64,
    pub end: u64,
    pub die: DieId,
}

/// Per-unit facts: its source file and its file table.
#[derive(Clone, Debug, Default)]
pub struct UnitInfo {
    /// Primary source file, as written in `DW_AT_name`.
    pub name: String,
    pub comp_dir: String,
    /// The primary source file as the file table names files (normalised, relative to
    /// `comp_dir` when inside it).
    pub path: String,
    /// `DW_AT_decl_file` / line-table file index → path (relative to `comp_dir` when inside it).
    pub files: Vec<String>,
    pub address_size: u8,
}

pub struct Dies<'a> {
    pub dies: Vec<Die<'a>>,
    pub units: Vec<UnitInfo>,
    /// Ranges of subprograms and inlined subroutines, sorted by start.
    pub ranges: Vec<PcRange>,
}

impl<'a> Dies<'a> {
    pub fn get(&self, id: DieId) -> Option<&Die<'a>> {
        self.dies.get(id as usize)
    }

    /// Source file of a DIE's declaration.
    pub fn decl_path(&self, id: DieId) -> Option<&str> {
        let d = self.get(id)?;
        self.file(d.unit, d.decl_file)
    }

    pub fn file(&self, unit: u16, index: u32) -> Option<&str> {
        self.units
            .get(usize::from(unit))?
            .files
            .get(index as usize)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Does the DIE's declaration sit in its unit's own source file (not a header)?
    pub fn in_primary_file(&self, id: DieId) -> bool {
        let Some(d) = self.get(id) else { return false };
        let Some(u) = self.units.get(usize::from(d.unit)) else {
            return false;
        };
        let Some(path) = self.file(d.unit, d.decl_file) else {
            return false;
        };
        path == u.path
    }

    /// The name of a DIE, following its abstract origin.
    pub fn name_of(&self, mut id: DieId) -> Option<&'a str> {
        for _ in 0..8 {
            let d = self.get(id)?;
            if d.name.is_some() {
                return d.name;
            }
            id = d.origin;
        }
        None
    }

    /// The type of a DIE, following its abstract origin.
    pub fn type_of(&self, mut id: DieId) -> DieId {
        for _ in 0..8 {
            let Some(d) = self.get(id) else { return NONE };
            if d.ty != NONE {
                return d.ty;
            }
            id = d.origin;
        }
        NONE
    }

    /// Direct children of a DIE.
    pub fn children(&self, id: DieId) -> impl Iterator<Item = DieId> + '_ {
        let end = self.get(id).map_or(id, |d| d.end);
        (id.saturating_add(1)..end).filter(move |&c| self.dies[c as usize].parent == id)
    }

    /// Innermost subprogram / inlined subroutine ranges covering `addr`, outermost first.
    pub fn scopes_at(&self, addr: u64) -> Vec<DieId> {
        let mut out: Vec<DieId> = self
            .ranges
            .iter()
            .take_while(|r| r.start <= addr)
            .filter(|r| addr < r.end)
            .map(|r| r.die)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub fn relative(path: &str, dir: &str) -> String {
    path.strip_prefix(dir)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path)
        .to_string()
}

/// Parse every unit of `dwarf`.
pub fn parse<'a>(dwarf: &gimli::Dwarf<R<'a>>) -> Result<Dies<'a>, Error> {
    let mut out = Dies {
        dies: Vec::new(),
        units: Vec::new(),
        ranges: Vec::new(),
    };
    let mut headers = dwarf.units();
    while let Some(h) = headers.next()? {
        let unit = dwarf.unit(h)?;
        let index = out.units.len();
        let index = u16::try_from(index).map_err(|_| Error("too many DWARF units".into()))?;
        parse_unit(dwarf, &unit, index, &mut out)?;
    }
    out.ranges.sort_by_key(|r| (r.start, r.die));
    Ok(out)
}

fn parse_unit<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    index: u16,
    out: &mut Dies<'a>,
) -> Result<(), Error> {
    let base = out.dies.len();
    let mut offsets: Vec<usize> = Vec::new();
    // Unresolved (die, attribute kind, unit offset).
    let mut refs: Vec<(usize, bool, usize)> = Vec::new();
    let mut stack: Vec<DieId> = Vec::new();
    let mut entries = unit.entries();
    let mut depth: isize = 0;
    while let Some((delta, e)) = entries.next_dfs()? {
        depth += delta;
        if depth < 0 {
            return Err(Error("malformed DIE tree".into()));
        }
        let id = out.dies.len();
        for closed in stack.drain(depth as usize..) {
            out.dies[closed as usize].end = id as DieId;
        }
        let id32 = u32::try_from(id).map_err(|_| Error("too many DIEs".into()))?;
        let parent = stack.last().copied().unwrap_or(NONE);
        offsets.push(e.offset().0);
        let mut d = Die {
            tag: e.tag(),
            flags: 0,
            unit: index,
            parent,
            end: NONE,
            name: None,
            ty: NONE,
            origin: NONE,
            byte_size: None,
            bit_size: None,
            bit_offset: None,
            value: None,
            decl_file: 0,
            decl_line: 0,
            low_pc: None,
            call_file: 0,
            call_line: 0,
        };
        read_attrs(dwarf, unit, e, &mut d, id, &mut refs)?;
        if matches!(
            e.tag(),
            dw::DW_TAG_subprogram | dw::DW_TAG_inlined_subroutine
        ) {
            let mut low = None;
            let mut ranges = dwarf.die_ranges(unit, e)?;
            while let Some(r) = ranges.next()? {
                if r.begin < r.end {
                    low = Some(low.map_or(r.begin, |l: u64| l.min(r.begin)));
                    out.ranges.push(PcRange {
                        start: r.begin,
                        end: r.end,
                        die: id32,
                    });
                }
            }
            if low.is_some() {
                d.flags |= HAS_PC;
                d.low_pc = d.low_pc.or(low);
            }
        }
        if e.tag() == dw::DW_TAG_compile_unit || e.tag() == dw::DW_TAG_partial_unit {
            out.units.push(unit_info(dwarf, unit, e)?);
        }
        out.dies.push(d);
        stack.push(id32);
    }
    let end = out.dies.len() as DieId;
    for closed in stack {
        out.dies[closed as usize].end = end;
    }
    if out.units.len() <= usize::from(index) {
        out.units.push(UnitInfo::default());
    }
    for (die, is_type, off) in refs {
        let Ok(pos) = offsets.binary_search(&off) else {
            continue;
        };
        let target = (base + pos) as DieId;
        if is_type {
            out.dies[die].ty = target;
        } else {
            out.dies[die].origin = target;
        }
    }
    Ok(())
}

fn read_attrs<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    e: &gimli::DebuggingInformationEntry<R<'a>>,
    d: &mut Die<'a>,
    id: usize,
    refs: &mut Vec<(usize, bool, usize)>,
) -> Result<(), Error> {
    let mut member_loc = None;
    let mut data_bit_offset = None;
    let mut legacy_bit_offset = None;
    let mut attrs = e.attrs();
    while let Some(a) = attrs.next()? {
        let v = a.value();
        match a.name() {
            dw::DW_AT_name => {
                d.name = dwarf
                    .attr_string(unit, v)
                    .ok()
                    .and_then(|s| s.to_string().ok());
            }
            dw::DW_AT_type => {
                if let AttributeValue::UnitRef(o) = v {
                    refs.push((id, true, o.0));
                }
            }
            dw::DW_AT_abstract_origin | dw::DW_AT_specification => {
                if let AttributeValue::UnitRef(o) = v {
                    refs.push((id, false, o.0));
                }
            }
            dw::DW_AT_byte_size => d.byte_size = v.udata_value(),
            dw::DW_AT_bit_size => d.bit_size = v.udata_value(),
            dw::DW_AT_data_member_location => member_loc = member_location(v),
            dw::DW_AT_data_bit_offset => data_bit_offset = v.udata_value(),
            dw::DW_AT_bit_offset => legacy_bit_offset = v.udata_value(),
            dw::DW_AT_const_value => {
                d.value = v
                    .sdata_value()
                    .or_else(|| v.udata_value().map(|u| u as i64))
            }
            dw::DW_AT_count => d.value = v.udata_value().map(|u| u as i64),
            dw::DW_AT_upper_bound => {
                d.value = v
                    .udata_value()
                    .map(|u| u.wrapping_add(1) as i64)
                    .or_else(|| v.sdata_value().map(|s| s.wrapping_add(1)))
            }
            dw::DW_AT_decl_file => d.decl_file = file_index(v),
            dw::DW_AT_decl_line => d.decl_line = v.udata_value().unwrap_or(0) as u32,
            dw::DW_AT_call_file => d.call_file = file_index(v),
            dw::DW_AT_call_line => d.call_line = v.udata_value().unwrap_or(0) as u32,
            dw::DW_AT_external => d.flags |= flag(v, EXTERNAL),
            dw::DW_AT_declaration => d.flags |= flag(v, DECLARATION),
            dw::DW_AT_inline => {
                if let AttributeValue::Inline(i) = v {
                    if i == dw::DW_INL_inlined || i == dw::DW_INL_declared_inlined {
                        d.flags |= INLINE;
                    }
                }
            }
            dw::DW_AT_location => {
                if let AttributeValue::Exprloc(x) = v {
                    if x.0.slice().first() == Some(&dw::DW_OP_addr.0) {
                        d.flags |= STATIC_ADDR;
                    }
                }
            }
            dw::DW_AT_low_pc => d.low_pc = dwarf.attr_address(unit, v).ok().flatten(),
            _ => {}
        }
    }
    if d.tag == dw::DW_TAG_member {
        d.bit_offset = match (member_loc, data_bit_offset, legacy_bit_offset, d.bit_size) {
            (_, Some(b), _, _) => Some(member_loc.unwrap_or(0) * 8 + b),
            // DWARF 2-4 bit-fields: counted from the storage unit's most significant bit.
            (loc, None, Some(bo), Some(bs)) => {
                let unit_bits = d.byte_size.unwrap_or(0) * 8;
                Some(loc.unwrap_or(0) * 8 + unit_bits.saturating_sub(bo + bs))
            }
            (loc, _, _, _) => Some(loc.unwrap_or(0) * 8),
        };
    }
    Ok(())
}

fn file_index(v: AttributeValue<R>) -> u32 {
    match v {
        AttributeValue::FileIndex(i) => i as u32,
        v => v.udata_value().unwrap_or(0) as u32,
    }
}

fn flag(v: AttributeValue<R>, bit: u8) -> u8 {
    match v {
        AttributeValue::Flag(false) => 0,
        _ => bit,
    }
}

/// A member offset: a constant, or the `DW_OP_plus_uconst N` expression older DWARF uses.
fn member_location(v: AttributeValue<R>) -> Option<u64> {
    if let Some(u) = v.udata_value() {
        return Some(u);
    }
    let AttributeValue::Exprloc(x) = v else {
        return None;
    };
    let mut r = x.0;
    let op = gimli::Reader::read_u8(&mut r).ok()?;
    if op != dw::DW_OP_plus_uconst.0 {
        return None;
    }
    gimli::Reader::read_uleb128(&mut r).ok()
}

fn unit_info<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    e: &gimli::DebuggingInformationEntry<R<'a>>,
) -> Result<UnitInfo, Error> {
    let string = |at| -> String {
        e.attr_value(at)
            .ok()
            .flatten()
            .and_then(|v| dwarf.attr_string(unit, v).ok())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let name = string(dw::DW_AT_name);
    let comp_dir = string(dw::DW_AT_comp_dir);
    let mut files = Vec::new();
    if let Some(lp) = &unit.line_program {
        let h = lp.header();
        // DWARF 5 numbers files from 0 (the primary file); earlier versions from 1.
        let first = if h.version() >= 5 { 0 } else { 1 };
        files.resize(first, String::new());
        for f in h.file_names() {
            let path = file_path(dwarf, unit, h, f, &comp_dir);
            files.push(relative(&path, &comp_dir));
        }
    }
    let full = if name.starts_with('/') || comp_dir.is_empty() {
        name.clone()
    } else {
        format!("{comp_dir}/{name}")
    };
    let path = relative(&normalize(&full), &comp_dir);
    Ok(UnitInfo {
        name,
        comp_dir,
        path,
        files,
        address_size: unit.header.address_size(),
    })
}

fn file_path<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    h: &gimli::LineProgramHeader<R<'a>>,
    f: &gimli::FileEntry<R<'a>>,
    comp_dir: &str,
) -> String {
    let s = |v| {
        dwarf
            .attr_string(unit, v)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let name = s(f.path_name());
    if name.starts_with('/') {
        return name;
    }
    let dir = f.directory(h).map(s).unwrap_or_default();
    let dir = if dir.is_empty() || dir.starts_with('/') {
        dir
    } else {
        format!("{comp_dir}/{dir}")
    };
    let joined = if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    };
    normalize(&joined)
}

/// Remove `./` and `dir/../` components.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "." => {}
            ".." if parts.last().is_some_and(|p| !p.is_empty() && *p != "..") => {
                parts.pop();
            }
            _ => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(normalize("/a/./b/../c.h"), "/a/c.h");
        assert_eq!(relative("/k/fs/proc/base.c", "/k"), "fs/proc/base.c");
        assert_eq!(relative("/other/x.h", "/k"), "/other/x.h");
    }
}
