package sanitize

import (
	"bytes"
	"encoding/binary"
)

// tagEnd returns the index of the > that ends a tag whose attributes start
// at b[k], minding quotes; at a < outside quotes it stops and says so; -1
// if the buffer ends first.
func tagEnd(b []byte, k int) (int, bool) {
	var q byte
	for ; k < len(b); k++ {
		c := b[k]
		if q != 0 {
			if c == q {
				q = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			q = c
		case '>':
			return k, true
		case '<':
			return k, false
		}
	}
	return -1, false
}

// fastStart handles the commonest start tag, <name> with a lower-case
// ASCII name and no attributes, inside the root element and outside
// fields, and reports whether it did; startTag does the rest. It is
// startTag cut down to that case, small enough for the compiler to keep
// its values in registers (which roughly halves the cost of a tag).
func (s *scanner) fastStart(b []byte, i int) bool {
	ns := i + 1
	ne := ns
	for ne < len(b) && plainName[b[ne]] {
		ne++
	}
	n := ne - ns
	n0 := s.nameLen
	// names has room for maxField bytes and 8 more; the names of the open
	// elements may take maxField, and a tag maxField too: startTag tells
	// the two bounds apart
	if ne == len(b) || b[ne] != '>' || nameClass[b[ns]] != nStart || s.depth == 0 || s.depth == maxDepth ||
		s.fieldDepth > 0 || int(n0)+n+2 > s.g.maxField || n >= 13 && digitCount(b[ns:ne]) >= 13 {
		return false
	}
	var isAccount, isField bool
	if local := b[ns:ne]; s.g.maybe(local) {
		isAccount = eqFold(local, "account")
		isField = s.g.isField(local, s.accountDepth > 0)
	}
	if s.text.active {
		s.text.end()
	}
	key := nameKey(b, ns, n)
	if n <= 8 {
		binary.LittleEndian.PutUint64(s.names[n0:], key)
	} else {
		copy(s.names[n0:], b[ns:ne])
	}
	s.nameLen += int32(n)
	e := &s.stack[s.depth]
	e.key, e.name0, e.name1, e.local = key, n0, s.nameLen, n0
	e.account, e.infield, e.isAccount = s.stack[s.depth-1].account, isField, isAccount
	if isAccount {
		s.accounts++
		s.accountDepth++
		e.account = s.accounts
	}
	if isField {
		s.fieldTop = s.depth
		s.fieldDepth++
	}
	s.depth++
	s.pos = ne + 1
	s.runStart = s.base + int64(ne+1)
	return true
}

// startTag handles <name ...> and <name .../> at b[i].
func (s *scanner) startTag(b []byte, i int) error {
	ns := i + 1
	if !isNameStart(b[ns]) {
		return s.literal("a < that starts no tag")
	}
	ne, plain, ls := ns, true, ns
	for ne < len(b) && plainName[b[ne]] {
		ne++
	}
	if ne < len(b) && nameClass[b[ne]] != nNone {
		ne, plain, ls = scanNameColon(b, ns)
	}
	if ne == len(b) {
		return s.more(i, "a tag")
	}
	gt, empty := -1, false
	switch b[ne] {
	case '>':
		gt = ne
	case '/':
		if ne+1 == len(b) {
			return s.more(i, "a tag")
		}
		if b[ne+1] != '>' {
			return s.literal("a malformed tag")
		}
		gt, empty = ne+1, true
	case ' ', '\t', '\r', '\n':
		e, closed := tagEnd(b, ne)
		if e < 0 {
			return s.more(i, "a tag")
		}
		if !closed {
			return s.literal("a tag that is not closed")
		}
		gt = e
	default:
		return s.literal("a malformed tag")
	}
	end := gt + 1
	if err := s.tooLong(i, end, "a tag"); err != nil {
		return err
	}
	name := b[ns:ne]
	if !plain {
		if err := s.checkName(name); err != nil {
			return err
		}
	}
	if err := s.nameNumbers(b, ns, ne, s.fieldDepth > 0, s.account(), "an element name"); err != nil {
		return err
	}
	// A tag ends the text run, unless it is inside a field, whose text
	// runs on through markup; there it stands between digits as a
	// separator would.
	wasInField := s.fieldDepth > 0
	if wasInField {
		s.text.sep()
	} else {
		s.text.brk()
	}
	root := s.depth == 0
	if root {
		if s.roots > 0 {
			if err := s.bad(ErrMalformed, "a second root element"); err != nil {
				return err
			}
		}
		s.roots++
		s.rootEnd = -1
	}
	local := b[ls:ne]
	var isAccount, isField bool
	if s.g.maybe(local) {
		isAccount = eqFold(local, "account")
		isField = s.g.isField(local, s.accountDepth > 0)
	}
	inAccount := s.accountDepth > 0 || isAccount
	infield := wasInField || isField
	account := s.account()
	if isAccount {
		s.accounts++
		account = s.accounts
	}
	if gt > ne && !empty {
		var err error
		if empty, err = s.attributes(b, ne, gt, infield, inAccount, account); err != nil {
			return err
		}
	}
	if !empty {
		if s.depth == maxDepth {
			return &spotError{ErrFieldTooLarge, "elements nested too deep"}
		}
		if int(s.nameLen)+len(name) > s.g.maxField {
			return &spotError{ErrFieldTooLarge, "the names of the open elements"}
		}
		n0 := s.nameLen
		key := nameKey(b, ns, len(name))
		switch {
		case int(n0)+max(len(name), 8) > len(s.names):
			s.names = append(s.names[:n0], name...)
			s.names = s.names[:cap(s.names)]
		case len(name) <= 8:
			binary.LittleEndian.PutUint64(s.names[n0:], key)
		default:
			copy(s.names[n0:], name)
		}
		s.nameLen += int32(len(name))
		if infield {
			if s.fieldDepth == 0 {
				s.fieldTop = s.depth
			}
			s.fieldDepth++
		}
		if isAccount {
			s.accountDepth++
		}
		// field by field: a composite literal here is built on the stack
		// and copied with wide loads that stall on the narrow stores
		e := &s.stack[s.depth]
		e.key, e.name0, e.name1, e.local = key, n0, s.nameLen, s.nameLen-int32(len(local))
		e.account, e.infield, e.isAccount = account, infield, isAccount
		s.depth++
	}
	if root && empty {
		s.rootEnd = s.base + int64(i)
	}
	s.pos = end
	if wasInField {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// attributes handles the attributes of a tag, from the white space at
// b[k] to the > at b[gt]. It reports whether the tag ends with />.
func (s *scanner) attributes(b []byte, k, gt int, infield, inAccount bool, account int32) (bool, error) {
	b = b[:gt]
	for {
		ws := k
		for k < gt && isSpace(b[k]) {
			k++
		}
		if k == gt {
			return false, nil
		}
		if b[k] == '/' {
			if k+1 == gt {
				return true, nil
			}
			if err := s.bad(ErrMalformed, "a / inside a tag"); err != nil {
				return false, err
			}
			k++
			continue
		}
		if k == ws {
			if err := s.bad(ErrMalformed, "attributes not apart"); err != nil {
				return false, err
			}
		}
		if !isNameStart(b[k]) {
			if err := s.bad(ErrMalformed, "an attribute without a name"); err != nil {
				return false, err
			}
			k++
			continue
		}
		ns := k
		ne, plain := scanName(b, k)
		name := b[ns:ne]
		if !plain {
			if err := s.checkName(name); err != nil {
				return false, err
			}
		}
		if err := s.nameNumbers(b, ns, ne, infield, account, "an attribute name"); err != nil {
			return false, err
		}
		for k = ne; k < gt && isSpace(b[k]); k++ {
		}
		if k == gt || b[k] != '=' {
			if err := s.bad(ErrMalformed, "an attribute without a value"); err != nil {
				return false, err
			}
			continue
		}
		for k++; k < gt && isSpace(b[k]); k++ {
		}
		var vs, ve int
		if k < gt && (b[k] == '"' || b[k] == '\'') {
			vs = k + 1
			if ve = bytes.IndexByte(b[vs:], b[k]); ve < 0 {
				if err := s.bad(ErrMalformed, "an attribute value not closed"); err != nil {
					return false, err
				}
				ve = gt
				k = gt
			} else {
				ve += vs
				k = ve + 1
			}
		} else {
			if err := s.bad(ErrMalformed, "an attribute value without quotes"); err != nil {
				return false, err
			}
			vs = k
			for k < gt && !isSpace(b[k]) && !(b[k] == '/' && k+1 == gt) {
				k++
			}
			ve = k
		}
		local := localName(name)
		s.aux.preset(ctxAttr, infield || s.g.isField(local, inAccount), account, local)
		if err := s.span(&s.aux, b, vs, ve, true); err != nil {
			return false, err
		}
		s.aux.brk()
	}
}

// endTag handles </name> at b[i].
func (s *scanner) endTag(b []byte, i int) error {
	ns := i + 2
	if top := s.depth - 1; top >= 0 {
		// the common case: </name> closing the innermost element
		e := &s.stack[top]
		n := int(e.name1 - e.name0)
		if ne := ns + n; ne < len(b) && b[ne] == '>' && nameKey(b, ns, n) == e.key &&
			(n <= 8 || string(b[ns+8:ne]) == string(s.names[e.name0+8:e.name1])) {
			return s.closeTop(i, ne+1)
		}
	}
	if ns >= len(b) {
		return s.more(i, "an end tag")
	}
	if !isNameStart(b[ns]) {
		return s.literal("a </ that starts no end tag")
	}
	ne, plain := scanName(b, ns)
	k := ne
	for k < len(b) && isSpace(b[k]) {
		k++
	}
	if k == len(b) {
		return s.more(i, "an end tag")
	}
	if b[k] != '>' {
		return s.literal("a malformed end tag")
	}
	end := k + 1
	if err := s.tooLong(i, end, "an end tag"); err != nil {
		return err
	}
	name := b[ns:ne]
	if !plain {
		if err := s.checkName(name); err != nil {
			return err
		}
	}
	if err := s.nameNumbers(b, ns, ne, s.fieldDepth > 0, s.account(), "an end tag's name"); err != nil {
		return err
	}
	pop := 0
	if top := s.depth - 1; top >= 0 && bytes.Equal(name, s.names[s.stack[top].name0:s.stack[top].name1]) {
		pop = 1
	} else {
		if err := s.bad(ErrMalformed, "an end tag that matches no open element"); err != nil {
			return err
		}
		for x := top; x >= 0; x-- {
			if bytes.Equal(name, s.names[s.stack[x].name0:s.stack[x].name1]) {
				pop = s.depth - x
				break
			}
		}
	}
	remain := s.fieldDepth
	for x := s.depth - pop; x < s.depth; x++ {
		if s.stack[x].infield {
			remain--
		}
	}
	if s.fieldDepth == 0 || remain == 0 {
		s.text.brk()
	} else {
		s.text.sep()
	}
	for ; pop > 0; pop-- {
		s.depth--
		e := s.stack[s.depth]
		s.nameLen = e.name0
		if e.infield {
			s.fieldDepth--
		}
		if e.isAccount {
			s.accountDepth--
		}
		if s.depth == 0 {
			s.rootEnd = s.base + int64(i)
		}
	}
	s.pos = end
	if s.fieldDepth > 0 {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// closeTop closes the innermost element, whose end tag is b[i:end] and
// holds the name it was opened with.
func (s *scanner) closeTop(i, end int) error {
	if err := s.tooLong(i, end, "an end tag"); err != nil {
		return err
	}
	top := s.depth - 1
	e := &s.stack[top]
	if e.infield && s.fieldDepth > 1 {
		s.text.sep()
	} else {
		s.text.brk()
	}
	if e.infield {
		s.fieldDepth--
	}
	if e.isAccount {
		s.accountDepth--
	}
	s.nameLen = e.name0
	s.depth = top
	if top == 0 {
		s.rootEnd = s.base + int64(i)
	}
	s.pos = end
	if s.fieldDepth > 0 {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// digitCount counts the ASCII digits of b.
func digitCount(b []byte) int {
	n := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}
