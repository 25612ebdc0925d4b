//! What the core thread owns (the store, the room extensions) lent to one guest call at a time,
//! instead of shared behind a lock.
//!
//! Wasmtime keeps a store's data as `'static` (and `Send`: a prepared instance crosses threads),
//! so a call cannot hold a `&mut Storage` there. The owner keeps the value in a [`Place`], boxed
//! so that moving it is moving a pointer; [`Place::lend`] swaps it into the borrower's (empty)
//! place for the duration of the call and swaps it back when the call returns, traps or unwinds:
//! no path can forget to give it back. One level down, a plugin import that runs an extension
//! hook lends the store it borrowed to the extension's context the same way. While a value is
//! lent, the loan holds its owner's place borrowed, so no one ever sees the owner's place empty:
//! [`Place::held`] relies on it.

/// Where a lent value lives: at its owner, or at a borrower for the duration of a loan.
pub struct Place<T>(Option<Box<T>>);

impl<T> Place<T> {
    pub fn holding(value: T) -> Place<T> {
        Place(Some(Box::new(value)))
    }

    /// A borrower's place between loans (or an owner that has nothing of the kind).
    pub fn vacant() -> Place<T> {
        Place(None)
    }

    /// What the place holds now: nothing in a borrower's place outside a loan.
    pub fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    /// What an owner's place holds. An owner's place is filled when it is made and emptied only
    /// by a loan, which gives the value back before the owner can be reached again; so this is
    /// for places filled with [`Place::holding`] (a store, never a borrower's place).
    pub fn held(&self) -> &T {
        self.get()
            .expect("a lent value is back before its owner is used again")
    }

    /// Same as [`Place::held`], to change.
    pub fn held_mut(&mut self) -> &mut T {
        self.get_mut()
            .expect("a lent value is back before its owner is used again")
    }

    pub fn into_inner(self) -> Option<T> {
        self.0.map(|value| *value)
    }

    /// Moves what this place holds into `borrower`'s place (found by `place`) for the duration
    /// of `run`, and back after, whatever `run` did.
    pub fn lend<B, R>(
        &mut self,
        borrower: &mut B,
        place: fn(&mut B) -> &mut Place<T>,
        run: impl FnOnce(&mut B) -> R,
    ) -> R {
        /// Gives the value back when dropped: after `run` returns, or while it unwinds.
        struct GiveBack<'a, T, B> {
            owner: &'a mut Place<T>,
            borrower: &'a mut B,
            place: fn(&mut B) -> &mut Place<T>,
        }
        impl<T, B> Drop for GiveBack<'_, T, B> {
            fn drop(&mut self) {
                std::mem::swap(self.owner, (self.place)(self.borrower));
            }
        }
        std::mem::swap(self, place(borrower));
        let loan = GiveBack {
            owner: self,
            borrower,
            place,
        };
        run(&mut *loan.borrower)
    }
}

impl<T> Default for Place<T> {
    fn default() -> Place<T> {
        Place::vacant()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Borrower {
        place: Place<String>,
    }

    fn place(borrower: &mut Borrower) -> &mut Place<String> {
        &mut borrower.place
    }

    #[test]
    fn a_loan_moves_the_value_to_the_borrower_and_back() {
        let mut owner = Place::holding("store".to_string());
        let mut borrower = Borrower {
            place: Place::vacant(),
        };
        let seen = owner.lend(&mut borrower, place, |borrower| {
            borrower.place.get_mut().unwrap().push_str(" written");
            borrower.place.get().cloned()
        });
        assert_eq!(seen.as_deref(), Some("store written"));
        assert_eq!(owner.held(), "store written");
        assert!(borrower.place.get().is_none(), "nothing stays lent");
    }

    #[test]
    fn a_panicking_borrower_still_gives_the_value_back() {
        let mut owner = Place::holding("store".to_string());
        let mut borrower = Borrower {
            place: Place::vacant(),
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            owner.lend(&mut borrower, place, |_| panic!("a bug in an import"))
        }));
        assert!(unwound.is_err());
        assert_eq!(owner.held(), "store");
        assert!(borrower.place.get().is_none());
    }

    #[test]
    fn a_borrower_lends_on_and_everything_comes_back() {
        let mut owner = Place::holding("store".to_string());
        let mut first = Borrower {
            place: Place::vacant(),
        };
        let mut second = Borrower {
            place: Place::vacant(),
        };
        owner.lend(&mut first, place, |first| {
            first.place.lend(&mut second, place, |second| {
                assert!(second.place.get().is_some());
            });
            assert!(first.place.get().is_some(), "back at the first borrower");
        });
        assert_eq!(owner.held(), "store");
        assert!(first.place.get().is_none() && second.place.get().is_none());
    }
}
