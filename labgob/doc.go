// Package labgob wraps encoding/gob and warns about two common mistakes:
// struct fields that gob silently ignores because they are unexported, and
// decoding into a variable that already holds non-default values.
package labgob
