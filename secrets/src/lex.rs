//! A small shell lexer: enough of POSIX sh quoting to find the words of each
//! simple command in a script given as an argument (`sh -c '…'`). It never
//! fails: text it does not understand becomes words anyway.

/// A word after quote removal, with the source offset of each of its bytes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Word {
    pub text: String,
    pub map: Vec<usize>,
}

impl Word {
    fn push(&mut self, b: u8, at: usize, bytes: &mut Vec<u8>) {
        bytes.push(b);
        self.map.push(at);
    }

    /// The source range of bytes `a..b` of the word.
    pub fn source_range(&self, a: usize, b: usize) -> Option<(usize, usize)> {
        if a >= b || b > self.map.len() {
            return None;
        }
        Some((self.map[a], self.map[b - 1] + 1))
    }
}

/// Split `src` into simple commands (separated by newlines, `;`, `&`, `|`,
/// `(`, `)`, `` ` `` and `$(`), each a list of words. Redirection operators
/// end a word and are dropped.
pub(crate) fn commands(src: &str) -> Vec<Vec<Word>> {
    let s = src.as_bytes();
    let mut cmds: Vec<Vec<Word>> = Vec::new();
    let mut cur: Vec<Word> = Vec::new();
    let mut w = Word::default();
    let mut bytes: Vec<u8> = Vec::new();
    let mut in_word = false;
    let mut i = 0;

    fn end_word(w: &mut Word, bytes: &mut Vec<u8>, in_word: &mut bool, cur: &mut Vec<Word>) {
        if *in_word {
            let mut done = std::mem::take(w);
            done.text = String::from_utf8_lossy(bytes).into_owned();
            if done.text.len() != done.map.len() {
                // lossy replacement changed lengths: keep the text, map to the word's start
                let at = done.map.first().copied().unwrap_or(0);
                done.map = vec![at; done.text.len()];
            }
            cur.push(done);
            bytes.clear();
            *in_word = false;
        }
    }

    while i < s.len() {
        let c = s[i];
        match c {
            b' ' | b'\t' => {
                end_word(&mut w, &mut bytes, &mut in_word, &mut cur);
                i += 1;
            }
            b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'`' => {
                end_word(&mut w, &mut bytes, &mut in_word, &mut cur);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
                i += 1;
            }
            b'<' | b'>' => {
                end_word(&mut w, &mut bytes, &mut in_word, &mut cur);
                i += 1;
            }
            b'#' if !in_word => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' if s.get(i + 1) == Some(&b'(') => {
                end_word(&mut w, &mut bytes, &mut in_word, &mut cur);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
                i += 2;
            }
            b'\'' => {
                in_word = true;
                i += 1;
                while i < s.len() && s[i] != b'\'' {
                    w.push(s[i], i, &mut bytes);
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                in_word = true;
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && matches!(s.get(i + 1), Some(b'"' | b'\\' | b'$' | b'`')) {
                        i += 1;
                    }
                    w.push(s[i], i, &mut bytes);
                    i += 1;
                }
                i += 1;
            }
            b'\\' if i + 1 < s.len() => {
                in_word = true;
                if s[i + 1] != b'\n' {
                    w.push(s[i + 1], i + 1, &mut bytes);
                }
                i += 2;
            }
            _ => {
                in_word = true;
                w.push(c, i, &mut bytes);
                i += 1;
            }
        }
    }
    end_word(&mut w, &mut bytes, &mut in_word, &mut cur);
    if !cur.is_empty() {
        cmds.push(cur);
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<Vec<String>> {
        commands(src)
            .into_iter()
            .map(|c| c.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn words_and_commands() {
        assert_eq!(
            texts("export A=1 && mysql -p'x y' \"a\\\"b\" | tee >out; echo $(cat f) # c"),
            vec![
                vec!["export", "A=1"],
                vec!["mysql", "-px y", "a\"b"],
                vec!["tee", "out"],
                vec!["echo"],
                vec!["cat", "f"],
            ]
        );
        assert!(commands("").is_empty());
        assert_eq!(texts("a\\ b c"), vec![vec!["a b", "c"]]);
    }

    #[test]
    fn maps_back_to_source() {
        let src = "x -p'hun ter'2";
        let c = commands(src);
        let w = &c[0][1];
        assert_eq!(w.text, "-phun ter2");
        let (a, b) = w.source_range(2, w.text.len()).unwrap();
        assert_eq!(&src[a..b], "hun ter'2");
    }
}
