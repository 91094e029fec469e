//! Which part of a message a section path names (RFC 3501 6.4.5), from
//! the body structure cached at delivery: used by body sections and by
//! BINARY items alike.

use mailfleet_mime::BodyPart;

/// The part a section path designates (RFC 3501 6.4.5).
pub(crate) fn find_part<'m>(
    root: &'m BodyPart,
    path: &[std::num::NonZeroU32],
) -> Option<&'m BodyPart> {
    let mut node = root;
    for (i, n) in path.iter().enumerate() {
        if i > 0
            && let Some(m) = &node.message
        {
            node = &m.body;
        }
        let n = n.get() as usize;
        if node.is_multipart() {
            node = node.parts.get(n - 1)?;
        } else if n != 1 {
            return None;
        }
    }
    Some(node)
}
