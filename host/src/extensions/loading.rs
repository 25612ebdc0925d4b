//! Loading what the catalog holds (see [`super::catalog`]): the stored components, compiled,
//! at start and whenever another instance sharing the store changed the catalog.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};

use super::catalog::{component_key, Entry};
use super::compiler::Compiled;
use super::Extensions;
use crate::storage::{Storage, Tier};

impl Extensions {
    /// Compiles the stored component of `entry` (the compile cache makes this a load when it
    /// was compiled before), with the rooms the catalog allows it in and the limits it was
    /// granted (refused if the operator's ceilings are now below them).
    pub(super) fn compile_stored(&self, entry: &Entry, storage: &mut Storage) -> Result<Compiled> {
        let bytes = storage
            .get(Tier::Extensions, &component_key(&entry.name))
            .context("its component is missing")?;
        let mut compiled = self.compiler.compile_asking(bytes, entry.limits)?;
        if compiled.entry.name != entry.name {
            bail!("it now calls itself '{}'", compiled.entry.name);
        }
        compiled.entry.rooms = entry.rooms.clone();
        compiled.entry.on_by_default = entry.on_by_default;
        Ok(compiled)
    }

    /// Forgets `name` and its live instances.
    pub(super) fn unload(&mut self, name: &str) {
        self.installed.remove(name);
        self.broken.remove(name);
        self.instances.retain(|(extension, _), _| extension != name);
        self.said_at.retain(|(extension, _), _| extension != name);
    }

    /// Between batches: when another instance sharing the store changed the catalog (installed,
    /// replaced or removed an extension, or changed where it is allowed), this one follows: it
    /// loads what is new (from the stored component), unloads what is gone, and takes the new
    /// rooms. Costs nothing until the store's catalog generation moves; alone on the store it
    /// never does. A failure (the database away) is retried at the next batch.
    pub fn follow_catalog(&mut self, storage: &mut Storage) {
        if storage.catalog_generation() <= self.catalog_followed {
            return;
        }
        match self.reload_catalog(storage) {
            Ok(generation) => self.catalog_followed = generation,
            Err(error) => tracing::warn!(
                "reading the extension catalog another instance changed: {error:#}; retrying"
            ),
        }
    }

    /// Returns the generation of the catalog it followed.
    fn reload_catalog(&mut self, storage: &mut Storage) -> Result<u64> {
        let generation = storage.reread_catalog()?;
        let catalog = Extensions::catalog(storage);
        let listed: BTreeSet<&str> = catalog.iter().map(|entry| entry.name.as_str()).collect();
        let gone: Vec<String> = self
            .installed
            .keys()
            .chain(self.broken.keys())
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.unload(&name);
            tracing::info!(
                extension = name,
                "room extension removed by another instance"
            );
        }
        for entry in catalog {
            if let Some(compiled) = self.installed.get_mut(&entry.name) {
                if compiled.entry.hash == entry.hash && compiled.entry.limits == entry.limits {
                    compiled.entry.rooms = entry.rooms;
                    compiled.entry.on_by_default = entry.on_by_default;
                    continue;
                }
            }
            if let Some((broken, _)) = self.broken.get_mut(&entry.name) {
                if broken.hash == entry.hash && broken.limits == entry.limits {
                    *broken = entry;
                    continue;
                }
            }
            storage.reread_extensions(&component_key(&entry.name))?;
            let name = entry.name.clone();
            match self.compile_stored(&entry, storage) {
                Ok(compiled) => {
                    tracing::info!(
                        extension = name,
                        version = compiled.entry.version,
                        "room extension installed by another instance"
                    );
                    self.unload(&name);
                    self.installed.insert(name, compiled);
                }
                Err(error) => {
                    tracing::error!(extension = name, "room extension not loaded: {error:#}");
                    self.unload(&name);
                    self.broken.insert(name, (entry, format!("{error:#}")));
                }
            }
        }
        Ok(generation)
    }
}
