//! Time budgets of guest calls, counted in epoch ticks (the engine's epoch advances every tick).

use std::time::Duration;

/// How often the epoch advances; time budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Epoch ticks for a time budget: at least one, and one more than the budget's whole ticks, as
/// the call may start just before the ticker fires.
pub fn budget_ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1
}
