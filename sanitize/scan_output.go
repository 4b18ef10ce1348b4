package sanitize

// mask replaces size bytes at stream offset off by 'X'.
func (s *scanner) mask(off int64, size int) {
	if !s.masking {
		return
	}
	i := int(off - s.base)
	for k := i; k < i+size; k++ {
		s.buf[k] = 'X'
	}
}

// found records a number.
func (s *scanner) found(d *detector, rule string) {
	if rule == RuleCard {
		s.cards++
	} else {
		s.accts++
	}
	if len(s.findings) >= MaxFindings {
		return
	}
	switch len(s.findings) {
	case 0:
		s.findings = make([]Finding, 0, 16)
	case 16:
		s.findings = append(make([]Finding, 0, MaxFindings), s.findings...)
	}
	s.findings = append(s.findings, Finding{Account: int(d.account), Field: s.where(d), Rule: rule})
}

func (s *scanner) where(d *detector) string {
	switch d.kind {
	case ctxElem:
		e := &s.stack[d.elem]
		return s.name("", s.names[e.local:e.name1])
	case ctxAttr:
		return s.name("@", d.attr)
	case ctxComment:
		return "#comment"
	case ctxPI:
		return "#pi"
	case ctxName:
		return "#name"
	case ctxHeader:
		return s.name("", d.attr)
	}
	return ""
}

// name returns prefix+b as a string, or "-" if b might say more than a
// name: longer than 32 bytes, or with a digit or a non-ASCII byte in it.
func (s *scanner) name(prefix string, b []byte) string {
	if len(b) > 32 {
		return "-"
	}
	for _, c := range b {
		if c >= '0' && c <= '9' || c >= 0x80 {
			return "-"
		}
	}
	var a [40]byte
	k := append(append(a[:0], prefix...), b...)
	if v, ok := s.intern[string(k)]; ok {
		return v
	}
	v := string(k)
	if len(s.intern) < maxNames {
		s.intern[v] = v
	}
	return v
}

func (s *scanner) account() int32 {
	if s.depth == 0 {
		return 0
	}
	return s.stack[s.depth-1].account
}
