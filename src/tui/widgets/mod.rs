//! Small widgets with state of their own: popups and the one-line text field.

pub(crate) mod input;
pub(crate) mod popup;
