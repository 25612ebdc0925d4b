//! The plugin's contract (`wit/muc-plugin.wit`) as Rust types: what the runtime implements and
//! what the room extensions' hooks answer the plugin in.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "muc-plugin",
});
