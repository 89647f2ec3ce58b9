"""The live board: the event bus (`bus`), what the stream says (`board`) and the caps on
open streams (`caps`)."""
