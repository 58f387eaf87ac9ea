package config

// The XML tree: confxml.xml read into a small tree of elements that keeps
// each one's line, in the charset the file declares (or as UTF-8 when it is
// valid UTF-8, as sersync read it).

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/net/html/charset"
)

// node is a parsed element; a small tree keeps line numbers, which
// xml.Unmarshal would lose.
type node struct {
	name  string
	attrs []xml.Attr
	line  int
	kids  []*node
}

// attr is an attribute of n; a missing element (nil) has none.
func (n *node) attr(name string) (string, bool) {
	if n == nil {
		return "", false
	}
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n *node) children(name string) []*node {
	var out []*node
	for _, k := range n.kids {
		if k.name == name {
			out = append(out, k)
		}
	}
	return out
}

func readTree(file string, data []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.CharsetReader = charset.NewReaderLabel
	if utf8.Valid(data) {
		// sersync used the bytes of the file as they are, whatever the
		// declaration: its stock file says ISO-8859-1, and a path written
		// into it in UTF-8 ("/data/中文") worked. Decoding such a file as
		// Latin-1 would make that path mojibake; a file really in Latin-1
		// with non-ASCII text is not valid UTF-8, and is decoded as declared.
		d.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
			if enc, _ := charset.Lookup(label); enc == nil {
				return nil, fmt.Errorf("unsupported charset: %q", label)
			}
			return input, nil
		}
	}
	var root *node
	var stack []*node
	for {
		// The end of the previous token is where the next one starts.
		line, _ := d.InputPos()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, &Error{File: file, Line: se.Line, Msg: "malformed XML: " + se.Msg}
			}
			l, _ := d.InputPos()
			return nil, &Error{File: file, Line: l, Msg: "malformed XML: " + err.Error()}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name.Local, attrs: t.Attr, line: line}
			if len(stack) == 0 {
				if root != nil {
					return nil, &Error{File: file, Line: line, Element: n.name, Msg: "malformed XML: more than one root element"}
				}
				if n.name != "head" {
					return nil, &Error{File: file, Line: line, Element: n.name, Msg: "root element must be <head>"}
				}
				root = n
			} else {
				parent := stack[len(stack)-1]
				parent.kids = append(parent.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if root == nil {
		return nil, &Error{File: file, Msg: "no root element; expected <head>"}
	}
	return root, nil
}
