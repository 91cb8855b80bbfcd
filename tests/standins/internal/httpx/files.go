package httpx

import (
	"fmt"
	"io"
	"os"
)

// WriteFile is the stand-ins' `write-file PATH TEXT` subcommand: the tests write a marker file
// into a mounted volume from inside the pod (the images have no shell), and ReadFile's
// `read-file PATH` reads it back after the pod was replaced. Exit status: 0 done, 1 failed,
// 64 on bad usage.
func WriteFile(args []string, out io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(out, "usage: write-file PATH TEXT")
		return 64
	}
	if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
		fmt.Fprintln(out, err)
		return 1
	}
	return 0
}

// ReadFile is the `read-file PATH` subcommand: the file's content, as it is, to out.
func ReadFile(args []string, out io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(out, "usage: read-file PATH")
		return 64
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(out, err)
		return 1
	}
	out.Write(b)
	return 0
}

// SubcommandIfAsked runs a test subcommand (probe, write-file, read-file) and exits when the
// binary was started as `<binary> <subcommand> ...`; otherwise it returns and the server starts.
func SubcommandIfAsked(args []string, out io.Writer, exit func(int)) {
	if len(args) < 2 {
		return
	}
	switch args[1] {
	case "probe":
		exit(Probe(args[2:], out))
	case "write-file":
		exit(WriteFile(args[2:], out))
	case "read-file":
		exit(ReadFile(args[2:], out))
	}
}
