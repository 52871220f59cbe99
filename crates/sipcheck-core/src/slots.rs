//! The tables the transaction layer and the call endpoint keep their machines in: a
//! generational slot table (ids that are never reused while their entry lives, and that name
//! nothing once it is gone, even when the slot is reused) and the small bucket of ids that
//! share one key.

/// Names one entry of a [`Slots`] table: its slot and the slot's generation when the entry
/// was put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SlotId {
    index: u32,
    generation: u32,
}

impl SlotId {
    /// The slot's position.
    pub(crate) const fn index(self) -> u32 {
        self.index
    }

    /// The slot's generation.
    pub(crate) const fn generation(self) -> u32 {
        self.generation
    }

    /// The id of slot `index` in its first generation (for tests of the layers above).
    #[cfg(test)]
    pub(crate) const fn first(index: u32) -> Self {
        Self {
            index,
            generation: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A generational slot table. A removed entry's slot is reused with the next generation, so a
/// stale id names nothing. The table keeps its length after a storm: its free slots carry the
/// generations that keep stale ids from naming new entries.
#[derive(Debug, Clone)]
pub(crate) struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slots<T> {
    /// How many entries live.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// How many slots the table has (live or free).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Put `value` in a free slot (or a new one); its id.
    ///
    /// # Panics
    /// With 2^32 slots.
    pub(crate) fn insert(&mut self, value: T) -> SlotId {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            SlotId {
                index,
                generation: slot.generation,
            }
        } else {
            let index = u32::try_from(self.slots.len()).expect("fewer than 2^32 entries");
            self.slots.push(Slot {
                generation: 0,
                value: Some(value),
            });
            SlotId {
                index,
                generation: 0,
            }
        }
    }

    /// The live entry `id`.
    pub(crate) fn get(&self, id: SlotId) -> Option<&T> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_ref()
    }

    /// The live entry `id`, to change.
    pub(crate) fn get_mut(&mut self, id: SlotId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Take the live entry `id` out; its slot is free for the next generation.
    pub(crate) fn remove(&mut self, id: SlotId) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        Some(value)
    }

    /// Every live entry with its id, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SlotId, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let value = slot.value.as_ref()?;
            Some((
                SlotId {
                    index: index as u32,
                    generation: slot.generation,
                },
                value,
            ))
        })
    }
}

/// The ids sharing one key: usually one, sometimes a few. `rest` allocates only when there is
/// more than one.
#[derive(Debug, Clone)]
pub(crate) struct Bucket<I> {
    first: I,
    rest: Vec<I>,
}

impl<I: Copy + PartialEq> Bucket<I> {
    /// A bucket of one.
    pub(crate) fn new(first: I) -> Self {
        Self {
            first,
            rest: Vec::new(),
        }
    }

    /// Add `id` last.
    pub(crate) fn push(&mut self, id: I) {
        self.rest.push(id);
    }

    /// Its ids, the first first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = I> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }

    /// Remove `id`; true when the bucket is then empty.
    pub(crate) fn remove(&mut self, id: I) -> bool {
        if self.first == id {
            match self.rest.pop() {
                Some(next) => self.first = next,
                None => return true,
            }
        } else {
            self.rest.retain(|&t| t != id);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_entry_s_id_names_nothing_even_when_its_slot_is_reused() {
        let mut t = Slots::default();
        let a = t.insert("a");
        let b = t.insert("b");
        assert_eq!((t.len(), t.get(a), t.get(b)), (2, Some(&"a"), Some(&"b")));
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.remove(a), None, "removed once");
        let c = t.insert("c");
        assert_eq!(c.index(), a.index(), "the free slot is reused");
        assert_ne!(c.generation(), a.generation());
        assert_eq!((t.get(a), t.get(c)), (None, Some(&"c")));
        assert_eq!(t.len(), 2);
        assert_eq!(t.slot_count(), 2);
        *t.get_mut(c).unwrap() = "C";
        let all: Vec<_> = t.iter().map(|(id, v)| (id, *v)).collect();
        assert_eq!(all, [(c, "C"), (b, "b")]);
    }

    #[test]
    fn a_bucket_keeps_its_ids_in_order_and_says_when_it_is_empty() {
        let mut b = Bucket::new(1);
        b.push(2);
        b.push(3);
        assert_eq!(b.iter().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(!b.remove(2));
        assert!(!b.remove(1));
        assert_eq!(b.iter().collect::<Vec<_>>(), [3]);
        assert!(!b.remove(7));
        assert!(b.remove(3));
    }
}
