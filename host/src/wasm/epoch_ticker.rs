//! The thread that advances an engine's epoch every tick, so that time budgets (counted in
//! ticks) end calls that run too long.

use wasmtime::Engine;

use super::EPOCH_TICK;

/// Advances the engine's epoch every tick for as long as the engine lives.
pub fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("spawning the epoch ticker");
}
