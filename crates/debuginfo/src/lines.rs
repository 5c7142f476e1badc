//! Source lines of code addresses (the DWARF line table) and the inlined calls that
//! cover an address.

use serde::Serialize;

use crate::die::{DieId, Dies};
use crate::load::R;
use crate::Error;

/// A source position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Loc {
    pub file: String,
    pub line: u32,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Clone, Copy, Debug)]
struct Row {
    addr: u64,
    end_sequence: bool,
    unit: u16,
    file: u32,
    line: u32,
}

/// Line-table rows of every unit, sorted by address.
pub struct Lines {
    rows: Vec<Row>,
}

/// One level of inlining at an address: the inlined function and where it was called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inlined {
    pub function: String,
    /// Where the inlined function is defined.
    pub defined: Option<Loc>,
    /// The call that was inlined.
    pub call: Option<Loc>,
}

impl Lines {
    pub fn parse(dwarf: &gimli::Dwarf<R>) -> Result<Lines, Error> {
        let mut rows = Vec::new();
        let mut headers = dwarf.units();
        let mut unit_index: u16 = 0;
        while let Some(h) = headers.next()? {
            let unit = dwarf.unit(h)?;
            if let Some(lp) = unit.line_program.clone() {
                let mut it = lp.rows();
                while let Some((_, row)) = it.next_row()? {
                    rows.push(Row {
                        addr: row.address(),
                        end_sequence: row.end_sequence(),
                        unit: unit_index,
                        file: row.file_index() as u32,
                        line: row.line().map_or(0, |l| l.get() as u32),
                    });
                }
            }
            unit_index = unit_index.saturating_add(1);
        }
        // Stable: rows of one address keep their order (the last one wins below).
        rows.sort_by_key(|r| r.addr);
        Ok(Lines { rows })
    }

    /// The source position of the instruction at `addr`.
    pub fn at(&self, dies: &Dies, addr: u64) -> Option<Loc> {
        let i = self.rows.partition_point(|r| r.addr <= addr);
        let r = self.rows.get(i.checked_sub(1)?)?;
        // The row must be of the same section (synthetic addresses differ in the high
        // half) and not the end of a sequence.
        if r.end_sequence || r.addr >> 32 != addr >> 32 || r.line == 0 {
            return None;
        }
        Some(Loc {
            file: dies.file(r.unit, r.file)?.to_string(),
            line: r.line,
        })
    }
}

/// The inlined calls covering `addr`, outermost first.
pub fn inlined_at(dies: &Dies, addr: u64) -> Vec<Inlined> {
    let mut out = Vec::new();
    for id in dies.scopes_at(addr) {
        let Some(d) = dies.get(id) else { continue };
        if d.tag != gimli::constants::DW_TAG_inlined_subroutine {
            continue;
        }
        out.push(describe(dies, id));
    }
    out
}

fn describe(dies: &Dies, id: DieId) -> Inlined {
    let d = &dies.dies[id as usize];
    let origin = d.origin;
    let defined = dies.get(origin).and_then(|o| {
        Some(Loc {
            file: dies.file(o.unit, o.decl_file)?.to_string(),
            line: o.decl_line,
        })
    });
    let call = dies.file(d.unit, d.call_file).map(|f| Loc {
        file: f.to_string(),
        line: d.call_line,
    });
    Inlined {
        function: dies.name_of(id).unwrap_or("?").to_string(),
        defined,
        call,
    }
}

/// Inlined calls whose code starts in [start, end), by address: (address, call).
pub fn inlined_within(dies: &Dies, start: u64, end: u64) -> Vec<(u64, Inlined)> {
    let from = dies.ranges.partition_point(|r| r.start < start);
    dies.ranges[from..]
        .iter()
        .take_while(|r| r.start < end)
        .filter(|r| {
            dies.get(r.die)
                .is_some_and(|d| d.tag == gimli::constants::DW_TAG_inlined_subroutine)
        })
        .map(|r| (r.start, describe(dies, r.die)))
        .collect()
}
