#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::resolution::*;

#[test]
fn resolution_round_trip_and_replay() {
    let conflicted = "a\n<<<<<<< ours\nx\n||||||| base\ny\n=======\nz\n>>>>>>> theirs\nb\n<<<<<<< ours\n1\n||||||| base\n2\n=======\n3\n>>>>>>> theirs\nend";
    let resolved = "a\nxz\nb\n13\nend";
    let rec = extract_resolutions("f", conflicted, resolved);
    assert_eq!(rec.len(), 2);
    assert!(!rec[0].whole_file);
    assert_eq!(rec[0].resolution, "xz\n");
    assert_eq!(rec[1].resolution, "13\n");
    let text = render_resolution("p.patch", "1.0", "2.0", &rec);
    let parsed = parse_resolution(&text, Path::new("r")).unwrap();
    assert_eq!(parsed, rec);
    assert_eq!(replay("f", conflicted, &parsed), (resolved.to_string(), 0));
    // A conflict elsewhere in a changed file still matches by hunk.
    let moved = format!("new line\n{conflicted}");
    assert_eq!(
        replay("f", &moved, &parsed),
        (format!("new line\n{resolved}"), 0)
    );
    // Editing the common text records the whole file.
    let rec = extract_resolutions("f", conflicted, "A\nxz\nb\n13\nend");
    assert!(rec.len() == 1 && rec[0].whole_file);
    let parsed = parse_resolution(&render_resolution("p", "1", "2", &rec), Path::new("r")).unwrap();
    assert_eq!(parsed, rec);
}
