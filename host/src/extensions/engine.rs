//! The room extensions' own wasmtime engine, apart from the MUC plugin's: instances come from
//! wasmtime's pooling allocator, sized from the operator's ceilings and [`MAX_INSTANCES`], and
//! each linear memory starts as a copy-on-write mapping of the component's initial image (its
//! data segments, which for Python and JavaScript hold the runtime the toolchain pre-initialised).
//! An instance then costs the pages it writes, not its runtime's image, and making one reuses a
//! slot instead of mapping memory anew.

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::ExtensionLimits;
use super::MAX_INSTANCES;
use crate::wasm::spawn_epoch_ticker;

/// Instances alive beyond the kept ones: the instance describing an extension being installed
/// (compiled off the core thread), and the one running a hook between the LRU's eviction and
/// its return.
const SPARE_INSTANCES: u32 = 16;
/// Per component instance, as [`crate::wasm::MemoryCap`] allows a store: the componentize-py and
/// StarlingMonkey runtimes are several core modules, most with a memory and a table.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MEMORIES_PER_COMPONENT: u32 = 16;
const TABLES_PER_COMPONENT: u32 = 64;
/// Slots of the pool for all live instances' core instances, memories and tables: a few per
/// instance on average (a Rust component has one memory; each slot is address space, not
/// memory, until used).
const CORE_INSTANCES_PER_INSTANCE: u32 = 16;
const MEMORIES_PER_INSTANCE: u32 = 4;
const TABLES_PER_INSTANCE: u32 = 8;
/// Elements of one table (Python's function table has tens of thousands).
const TABLE_ELEMENTS: usize = 100_000;
/// Host-side bookkeeping of one instance (`VMContext`s); Python's core modules need more than
/// the 1 MiB default.
const INSTANCE_METADATA_BYTES: usize = 4 << 20;

/// An engine for room extensions under `limits`' ceilings, with its own epoch ticker.
pub fn extension_engine(limits: &ExtensionLimits) -> Result<Engine> {
    let instances = MAX_INSTANCES as u32 + SPARE_INSTANCES;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_INSTANCE)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * MEMORIES_PER_INSTANCE)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(instances * TABLES_PER_INSTANCE)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_component_instance_size(INSTANCE_METADATA_BYTES)
        .max_core_instance_size(INSTANCE_METADATA_BYTES)
        // The ceiling bounds every memory; each instance's own limit is its store's limiter.
        .max_memory_size(limits.max_memory_bytes);
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Wasmtime's default, stated because the cheap instances depend on it.
    config.memory_init_cow(true);
    let engine = Engine::new(&config)?;
    spawn_epoch_ticker(&engine);
    Ok(engine)
}
