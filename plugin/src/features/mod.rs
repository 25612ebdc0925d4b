//! Room features, one module each: its join check, form field, disco feature and behaviour.

pub mod lock;
