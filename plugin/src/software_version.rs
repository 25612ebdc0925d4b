//! XEP-0092 on the service: the MUC logic's name and version, so an operator (or a test) can
//! tell which build is serving, before and after a hot swap.

use minidom::Element;
use xmpp_parsers::ns;

/// The answer, naming `version` (the service's build).
pub fn query(version: &str) -> Element {
    Element::builder("query", ns::VERSION)
        .append(
            Element::builder("name", ns::VERSION)
                .append("muc-wasm")
                .build(),
        )
        .append(
            Element::builder("version", ns::VERSION)
                .append(version)
                .build(),
        )
        .build()
}
