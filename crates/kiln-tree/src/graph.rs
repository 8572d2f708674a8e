//! The image dependency graph: parents exist, no cycles, parents before children.

use std::collections::BTreeMap;

use crate::error::TreeError;
use crate::model::ImageDef;

/// Checks every parent and returns the images in dependency order: parents before children, and
/// otherwise by name, so the order is stable.
pub fn order_images(images: Vec<ImageDef>) -> Result<Vec<ImageDef>, TreeError> {
    let by_name: BTreeMap<String, ImageDef> = images.into_iter().map(|i| (i.name.clone(), i)).collect();
    for image in by_name.values() {
        if let Some(parent) = &image.parent
            && !by_name.contains_key(parent)
        {
            return Err(TreeError::UnknownParent {
                image: image.name.clone(),
                parent: parent.clone(),
                file: image.defined_in.clone(),
            });
        }
    }
    if let Some(cycle) = find_cycle(&by_name) {
        return Err(TreeError::ParentCycle { cycle });
    }

    let mut ordered = Vec::with_capacity(by_name.len());
    // Depth of each image in its parent chain; sorting by (depth, name) puts parents first.
    let mut depth: Vec<(usize, &str)> = by_name
        .keys()
        .map(|name| (chain_len(&by_name, name), name.as_str()))
        .collect();
    depth.sort();
    for (_, name) in depth {
        ordered.push(name.to_owned());
    }
    let mut by_name = by_name;
    Ok(ordered
        .into_iter()
        .filter_map(|name| by_name.remove(&name))
        .collect())
}

fn chain_len(by_name: &BTreeMap<String, ImageDef>, name: &str) -> usize {
    let mut len = 0;
    let mut current = by_name.get(name).and_then(|i| i.parent.as_deref());
    while let Some(parent) = current {
        len += 1;
        current = by_name.get(parent).and_then(|i| i.parent.as_deref());
    }
    len
}

fn find_cycle(by_name: &BTreeMap<String, ImageDef>) -> Option<Vec<String>> {
    for start in by_name.keys() {
        let mut path = vec![start.clone()];
        let mut current = by_name.get(start).and_then(|i| i.parent.clone());
        while let Some(parent) = current {
            if let Some(pos) = path.iter().position(|p| *p == parent) {
                let mut cycle = path[pos..].to_vec();
                cycle.push(parent);
                return Some(cycle);
            }
            path.push(parent.clone());
            current = by_name.get(&parent).and_then(|i| i.parent.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImageKind;

    fn image(name: &str, parent: Option<&str>) -> ImageDef {
        ImageDef {
            name: name.into(),
            definition: name.into(),
            dir: name.into(),
            parent: parent.map(Into::into),
            args: Default::default(),
            symbol: None,
            kind: ImageKind::InTree,
            defined_in: "kind.yml".into(),
        }
    }

    #[test]
    fn parents_come_first() {
        let order = order_images(vec![
            image("a-child", Some("z-base")),
            image("z-base", None),
            image("gc", Some("a-child")),
        ])
        .unwrap();
        let names: Vec<_> = order.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["z-base", "a-child", "gc"]);
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let err = order_images(vec![image("a", Some("b")), image("b", Some("a"))]).unwrap_err();
        assert_eq!(err.to_string(), "parent cycle: a -> b -> a");
    }

    #[test]
    fn unknown_parent_names_both() {
        let err = order_images(vec![image("a", Some("nope"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image `a`: parent `nope` is not an image of this repository (kind.yml)"
        );
    }
}
