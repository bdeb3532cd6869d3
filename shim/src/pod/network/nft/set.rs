//! Sets: their definitions (key types, flags, the field lengths of a
//! concatenation) and their elements (keys, ranges as the kernel's pipapo
//! and rbtree each want them).

use std::net::IpAddr;

use agentbox_netpolicy::ruleset::{encode_key, Elem, Field, Ruleset, SetDef, Value};
use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetDescription,
    SetElementAttribute, SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage,
};

use super::expr::set_id;
use super::{nft, u32_nla, Msg};

fn concat_desc(s: &SetDef) -> Vec<SetDescription> {
    if s.key.len() < 2 {
        return vec![];
    }
    // NFTA_SET_DESC_CONCAT: a list of NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN }
    let fields = s
        .key
        .iter()
        .map(|f| {
            let inner = u32_nla(1, f.size() as u32);
            let mut b = vec![0u8; netlink_packet_core::Emitable::buffer_len(&inner)];
            netlink_packet_core::Emitable::emit(&inner, &mut b);
            DefaultNla::new(1 | netlink_packet_core::NLA_F_NESTED, b)
        })
        .collect();
    vec![SetDescription::Concat(fields)]
}

fn key_type(key: &[Field]) -> u32 {
    key.iter().fold(0, |acc, f| (acc << 6) | f.type_id())
}

pub(super) fn new_set(rs: &Ruleset, s: &SetDef) -> Msg {
    let mut flags = SetFlags::empty();
    if s.interval {
        flags |= SetFlags::Interval;
    }
    // the kernel wants the flag with every field description of a concatenation
    if s.key.len() > 1 {
        flags |= SetFlags::Concat;
    }
    if s.timeout {
        flags |= SetFlags::Timeout;
    }
    if s.dynamic {
        flags |= SetFlags::Eval;
    }
    let mut attrs = vec![
        SetAttribute::Table(rs.table.clone()),
        SetAttribute::Name(s.name.clone()),
        SetAttribute::Flags(flags),
        SetAttribute::KeyType(key_type(&s.key)),
        SetAttribute::KeyLen(s.key_len() as u32),
        SetAttribute::Id(set_id(rs, &s.name).unwrap_or(0)),
    ];
    let desc = concat_desc(s);
    if !desc.is_empty() {
        attrs.push(SetAttribute::Description(desc));
    }
    nft(
        NfTablesMessage::NewSet(SetMessage { attributes: attrs }),
        true,
    )
}

/// One more than `v` in the last field (for the end of an rbtree interval);
/// None if it is the family's last address.
fn after(v: &[Value]) -> Option<Vec<Value>> {
    let mut out = v.to_vec();
    match out.last_mut()? {
        Value::Addr(IpAddr::V4(a)) => {
            let n = u32::from(*a).checked_add(1)?;
            *out.last_mut()? = Value::Addr(IpAddr::V4(n.into()));
        }
        Value::Addr(IpAddr::V6(a)) => {
            let n = u128::from(*a).checked_add(1)?;
            *out.last_mut()? = Value::Addr(IpAddr::V6(n.into()));
        }
        _ => return None,
    }
    Some(out)
}

pub(in crate::pod::network) fn key_data(fields: &[Field], values: &[Value]) -> SetElementAttribute {
    SetElementAttribute::Key(DataAttribute::Value(encode_key(fields, values)))
}

/// Element attributes for a set's static elements.
pub(super) fn element_attrs(s: &SetDef) -> Vec<ListAttribute<SetElementAttribute>> {
    let mut out = Vec::new();
    for e in &s.elements {
        match e {
            Elem::Key(k) => out.push(ListAttribute::Element(vec![key_data(&s.key, k)])),
            // concatenations: the kernel's pipapo takes first and last key
            Elem::Range(a, b) if s.key.len() > 1 => {
                let end = DefaultNla::new(1, encode_key(&s.key, b)); // NFTA_DATA_VALUE
                out.push(ListAttribute::Element(vec![
                    key_data(&s.key, a),
                    SetElementAttribute::KeyEnd(vec![end]),
                ]));
            }
            // single field: the rbtree takes the first key and, flagged, the one after the last
            Elem::Range(a, b) => {
                out.push(ListAttribute::Element(vec![key_data(&s.key, a)]));
                if let Some(next) = after(b) {
                    out.push(ListAttribute::Element(vec![
                        key_data(&s.key, &next),
                        SetElementAttribute::Flags(SetElementFlags::IntervalEnd),
                    ]));
                }
            }
        }
    }
    out
}

pub(in crate::pod::network) fn elements_msg(
    table: &str,
    set: &str,
    elems: Vec<ListAttribute<SetElementAttribute>>,
    delete: bool,
) -> Msg {
    let attrs = vec![
        SetElementList::Table(table.into()),
        SetElementList::Set(set.into()),
        SetElementList::Elements(elems),
    ];
    let m = SetElementMessage { attributes: attrs };
    if delete {
        nft(NfTablesMessage::DeleteSetElement(m), false)
    } else {
        nft(NfTablesMessage::NewSetElement(m), true)
    }
}
