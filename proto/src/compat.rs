//! Schema evolution check. A change is accepted only if it is *fully*
//! compatible with the version before it: the new reader reads old data
//! (backward) and the old reader reads new data (forward), so producers and
//! consumers can be upgraded in either order.

use std::collections::HashMap;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// One way a new schema breaks readers or writers of the old one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {reason}")]
pub struct Incompatibility {
    /// The message, record or field concerned.
    pub subject: String,
    /// What breaks.
    pub reason: String,
}

fn incompatibility(subject: impl Into<String>, reason: impl Into<String>) -> Incompatibility {
    Incompatibility {
        subject: subject.into(),
        reason: reason.into(),
    }
}

/// Checks that `new` can read data written with `old` and the other way round.
pub fn avro(old: &Schema, new: &Schema) -> Result<(), Vec<Incompatibility>> {
    let mut found = Vec::new();
    if let Err(e) = SchemaCompatibility::can_read(old, new) {
        found.push(incompatibility(
            "avro (backward)",
            format!("the new schema cannot read old data: {e}"),
        ));
    }
    if let Err(e) = SchemaCompatibility::can_read(new, old) {
        found.push(incompatibility(
            "avro (forward)",
            format!("the old schema cannot read new data: {e}"),
        ));
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(found)
    }
}

/// Checks two compiled `.proto` versions, message by message (matched by
/// name, whatever their package): no message, field or enum value removed
/// without reserving its number, no field number reused with another type,
/// cardinality or name (the JSON mapping uses names), no new required field.
pub fn protobuf(
    old: &FileDescriptorSet,
    new: &FileDescriptorSet,
) -> Result<(), Vec<Incompatibility>> {
    let old_messages = messages(old);
    let new_messages = messages(new);
    let mut found = Vec::new();
    for (name, old_message) in &old_messages {
        match new_messages.get(name) {
            None => found.push(incompatibility(name.clone(), "message removed")),
            Some(new_message) => compare_message(name, old_message, new_message, &mut found),
        }
    }
    let old_enums = enums(old);
    let new_enums = enums(new);
    for (name, old_enum) in &old_enums {
        match new_enums.get(name) {
            None => found.push(incompatibility(name.clone(), "enum removed")),
            Some(new_enum) => compare_enum(name, old_enum, new_enum, &mut found),
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(found)
    }
}

fn messages(set: &FileDescriptorSet) -> HashMap<String, &DescriptorProto> {
    fn walk<'a>(
        prefix: &str,
        m: &'a DescriptorProto,
        out: &mut HashMap<String, &'a DescriptorProto>,
    ) {
        let name = format!("{prefix}{}", m.name());
        for nested in &m.nested_type {
            walk(&format!("{name}."), nested, out);
        }
        out.insert(name, m);
    }
    let mut out = HashMap::new();
    for file in &set.file {
        for m in &file.message_type {
            walk("", m, &mut out);
        }
    }
    out
}

fn enums(set: &FileDescriptorSet) -> HashMap<String, &EnumDescriptorProto> {
    let mut out = HashMap::new();
    for file in &set.file {
        for e in &file.enum_type {
            out.insert(e.name().to_owned(), e);
        }
    }
    out
}

/// The type name without its package, so v1 and v2 packages compare equal.
fn simple_type_name(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

fn compare_message(
    name: &str,
    old: &DescriptorProto,
    new: &DescriptorProto,
    found: &mut Vec<Incompatibility>,
) {
    let reserved = |number: i32| {
        new.reserved_range
            .iter()
            .any(|r| (r.start()..r.end()).contains(&number))
    };
    for old_field in &old.field {
        let subject = format!("{name}.{} = {}", old_field.name(), old_field.number());
        match new.field.iter().find(|f| f.number() == old_field.number()) {
            None if reserved(old_field.number()) => {}
            None => found.push(incompatibility(
                subject,
                "field removed without reserving its number",
            )),
            Some(new_field) => compare_field(subject, old_field, new_field, found),
        }
    }
    added_required(name, old, new, found);
}

/// What changed in a field kept under its number: its type, whether it
/// repeats, its name.
fn compare_field(
    subject: String,
    old_field: &FieldDescriptorProto,
    new_field: &FieldDescriptorProto,
    found: &mut Vec<Incompatibility>,
) {
    if new_field.r#type() != old_field.r#type()
        || (new_field.r#type() == Type::Message || new_field.r#type() == Type::Enum)
            && simple_type_name(new_field.type_name()) != simple_type_name(old_field.type_name())
    {
        found.push(incompatibility(
            subject.clone(),
            format!(
                "type changed from {:?} {} to {:?} {}",
                old_field.r#type(),
                old_field.type_name(),
                new_field.r#type(),
                new_field.type_name()
            ),
        ));
    }
    if (new_field.label() == Label::Repeated) != (old_field.label() == Label::Repeated) {
        found.push(incompatibility(
            subject.clone(),
            "changed between repeated and singular",
        ));
    }
    if new_field.name() != old_field.name() {
        found.push(incompatibility(
            subject,
            format!("renamed to {} (breaks the JSON mapping)", new_field.name()),
        ));
    }
}

/// Fields `new` adds as required, which old writers never set.
fn added_required(
    name: &str,
    old: &DescriptorProto,
    new: &DescriptorProto,
    found: &mut Vec<Incompatibility>,
) {
    for new_field in &new.field {
        let is_new = !old.field.iter().any(|f| f.number() == new_field.number());
        if is_new && new_field.label() == Label::Required {
            found.push(incompatibility(
                format!("{name}.{} = {}", new_field.name(), new_field.number()),
                "new field is required: old writers never set it",
            ));
        }
    }
}

fn compare_enum(
    name: &str,
    old: &EnumDescriptorProto,
    new: &EnumDescriptorProto,
    found: &mut Vec<Incompatibility>,
) {
    for value in &old.value {
        let kept = new.value.iter().any(|v| v.number() == value.number());
        let reserved = new
            .reserved_range
            .iter()
            .any(|r| (r.start()..=r.end()).contains(&value.number()));
        if !kept && !reserved {
            found.push(incompatibility(
                format!("{name}.{} = {}", value.name(), value.number()),
                "enum value removed without reserving its number",
            ));
        }
    }
}
