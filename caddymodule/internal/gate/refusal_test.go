package gate

import (
	"encoding/json"
	"testing"
)

func TestRenderErrorEscapes(t *testing.T) {
	b, _ := Render(FormatMDX, Refusal{Code: "4010", Message: `a<b>&"c"`})
	if string(b) != `<mdx version="5.0"><error><code>4010</code><message>a&lt;b&gt;&amp;&#34;c&#34;</message></error></mdx>` {
		t.Errorf("%s", b)
	}
	b, _ = Render(FormatJSON, Refusal{Message: `quote " and \`})
	var v map[string]map[string]string
	if err := json.Unmarshal(b, &v); err != nil || v["error"]["message"] != `quote " and \` {
		t.Errorf("%s: %v", b, err)
	}
}
