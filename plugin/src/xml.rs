//! Small element edits minidom lacks.

use minidom::{Element, Node};

/// Keeps only the child elements `keep` accepts (text and other nodes stay).
pub fn retain_children(element: &mut Element, mut keep: impl FnMut(&Element) -> bool) {
    for node in element.take_nodes() {
        match &node {
            Node::Element(child) if !keep(child) => {}
            _ => element.append_node(node),
        }
    }
}
