//! The memory cap of one instance, plugin or extension.

use wasmtime::ResourceLimiter;

/// Caps an instance's linear memory, remembering whether the cap was what stopped a call so
/// the fault can be reported as a resource constraint.
pub struct MemoryCap {
    limit: usize,
    /// Bytes of every linear memory of the instance: the cap is the instance's, however many
    /// memories its component has.
    total: usize,
    pub hit: bool,
}

impl MemoryCap {
    pub fn new(limit: usize) -> MemoryCap {
        MemoryCap {
            limit,
            total: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current + desired;
        if total > self.limit {
            self.hit = true;
            wasmtime::bail!("memory cap of {} bytes reached", self.limit);
        }
        self.total = total;
        Ok(true)
    }

    // A Rust component has a handful of core instances, tables and memories: far fewer than
    // wasmtime's defaults of 10000 each.
    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
