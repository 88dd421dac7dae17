//! The access key CSV file that the IAM console offers for download. Two layouts exist: the
//! access-key page writes `Access key ID,Secret access key`, the user-creation page writes
//! `User name,Password,Access key ID,Secret access key,Console login link`. Either may start
//! with a UTF-8 byte order mark and end its lines with CRLF. Errors name the file and the
//! line, never a value from it.

use std::path::{Path, PathBuf};

use super::secret::Secret;

/// The key pair read from a credentials file.
#[derive(Clone, Debug)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("credentials file {}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct CsvError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Reads and parses the file at `path`.
pub fn read_access_key(path: &Path) -> Result<AccessKey, CsvError> {
    let text = std::fs::read_to_string(path).map_err(|e| CsvError {
        path: path.to_owned(),
        line: None,
        message: format!("cannot be read: {e}"),
    })?;
    parse_access_key(path, &text)
}

/// Parses the text of a credentials file.
pub fn parse_access_key(path: &Path, text: &str) -> Result<AccessKey, CsvError> {
    let error = |line: Option<usize>, message: &str| CsvError {
        path: path.to_owned(),
        line,
        message: message.to_owned(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());

    let Some((header_line, header)) = rows.next() else {
        return Err(error(
            None,
            "is empty; expected the access key CSV the IAM console writes",
        ));
    };
    let columns: Vec<String> = fields(header).map(|f| f.to_ascii_lowercase()).collect();
    let find = |name: &str| columns.iter().position(|c| c == name);
    let (Some(id_column), Some(secret_column)) = (find("access key id"), find("secret access key"))
    else {
        return Err(error(
            Some(header_line),
            "the header has no \"Access key ID\" and \"Secret access key\" columns; expected the CSV the IAM console writes",
        ));
    };

    let Some((line, row)) = rows.next() else {
        return Err(error(
            Some(header_line + 1),
            "no access key below the header",
        ));
    };
    if let Some((extra, _)) = rows.next() {
        return Err(error(
            Some(extra),
            "more than one access key; the file must hold exactly one",
        ));
    }
    let values: Vec<&str> = fields(row).collect();
    if values.len() != columns.len() {
        let message = format!(
            "{} fields where the header has {}",
            values.len(),
            columns.len()
        );
        return Err(error(Some(line), &message));
    }
    let access_key_id = values[id_column];
    let secret = values[secret_column];
    let valid_id = (16..=128).contains(&access_key_id.len())
        && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid_id {
        return Err(error(
            Some(line),
            "the access key id is not 16 to 128 letters and digits",
        ));
    }
    if secret.is_empty() || secret.chars().any(char::is_whitespace) {
        return Err(error(
            Some(line),
            "the secret access key is empty or holds white space",
        ));
    }
    Ok(AccessKey {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: Secret::new(secret),
    })
}

/// Comma-separated fields, with surrounding quotes and blanks removed. IAM's files hold no
/// commas inside fields.
fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.split(',').map(|f| f.trim().trim_matches('"').trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn parse(text: &str) -> Result<AccessKey, CsvError> {
        parse_access_key(Path::new("customer-a.csv"), text)
    }

    #[test]
    fn access_key_page_layout() {
        let key = parse(&format!("Access key ID,Secret access key\n{ID},{SECRET}\n")).unwrap();
        assert_eq!(key.access_key_id, ID);
        assert_eq!(key.secret_access_key.expose(), SECRET);
    }

    #[test]
    fn user_creation_layout_with_bom_and_crlf() {
        let text = format!(
            "\u{feff}User name,Password,Access key ID,Secret access key,Console login link\r\n\
             smart-network-sender,,{ID},{SECRET},https://123456789012.signin.aws.amazon.com/console\r\n"
        );
        let key = parse(&text).unwrap();
        assert_eq!(key.access_key_id, ID);
        assert_eq!(key.secret_access_key.expose(), SECRET);
    }

    #[test]
    fn quoted_fields_and_no_final_newline() {
        let key = parse(&format!(
            "\"Access key ID\",\"Secret access key\"\n\"{ID}\",\"{SECRET}\""
        ))
        .unwrap();
        assert_eq!(key.access_key_id, ID);
    }

    #[test]
    fn malformed_files_name_the_line_and_never_the_secret() {
        let cases = [
            ("", None, "empty"),
            (
                "Access key ID,Secret access key\n",
                Some(2),
                "no access key",
            ),
            ("Key,Value\nA,B\n", Some(1), "header"),
            (
                &format!("Access key ID,Secret access key\n{ID}\n") as &str,
                Some(2),
                "1 fields",
            ),
            (
                &format!("Access key ID,Secret access key\nshort,{SECRET}\n"),
                Some(2),
                "access key id",
            ),
            (
                &format!("Access key ID,Secret access key\n{ID},\n"),
                Some(2),
                "secret access key is empty",
            ),
            (
                &format!("Access key ID,Secret access key\n{ID},{SECRET}\n{ID},{SECRET}\n"),
                Some(3),
                "more than one",
            ),
        ];
        for (text, line, expected) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            let message = error.to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(message.contains("customer-a.csv"));
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let error = read_access_key(Path::new("/nonexistent/keys.csv")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/keys.csv"));
    }
}
