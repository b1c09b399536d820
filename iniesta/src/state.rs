//! Application state registered at startup, looked up by type.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Values registered with [`AppBuilder::state`](crate::AppBuilder::state), one per type.
#[derive(Clone, Default)]
pub struct States {
    by_type: HashMap<TypeId, (Arc<dyn Any + Send + Sync>, &'static str)>,
}

impl States {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.by_type
            .insert(TypeId::of::<T>(), (Arc::new(value), type_name::<T>()));
    }

    /// The value of type `T`, shared.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let (value, _) = self.by_type.get(&TypeId::of::<T>())?;
        Arc::clone(value).downcast().ok()
    }

    /// Whether a value of type `T` was registered.
    pub fn contains<T: 'static>(&self) -> bool {
        self.by_type.contains_key(&TypeId::of::<T>())
    }
}

impl fmt::Debug for States {
    // Values may hold credentials: list the types only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.by_type.values().map(|(_, name)| *name).collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}
