//! How request bodies read two JSON shapes serde would otherwise get wrong (docs/api-contract.md):
//!
//! * a whole number written with a fraction or an exponent (`60.0`, `6e1`) is that integer:
//!   JSON has one number type, and JSON Schema's `integer` admits it, so the API's integer
//!   fields take it ([`whole`], [`whole_option`]);
//! * a nested object must be a JSON object: serde's derived structs also take an array of the
//!   fields' values in order, a shape no document describes ([`object_option`]).
//!
//! Use them with `#[serde(deserialize_with = "...")]` (and `default` for the `Option`s).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Unexpected, Visitor};

/// An integer type a whole number can be read into.
pub trait Whole: Sized + TryFrom<u64> + TryFrom<i64> {
    const NAME: &'static str;
}

macro_rules! whole_types {
    ($($t:ty),*) => { $(impl Whole for $t { const NAME: &'static str = stringify!($t); })* };
}
whole_types!(u8, u16, u32, u64, i32, i64);

struct WholeVisitor<T>(PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn from_u64<E: de::Error>(v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &Self(PhantomData)))
    }

    fn from_i64<E: de::Error>(v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &Self(PhantomData)))
    }
}

impl<'de, T: Whole> Visitor<'de> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number that fits {}", T::NAME)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::from_u64(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::from_i64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // Exactly representable whole numbers only: past 2^53 a float no longer names one
        // integer.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if v.fract() != 0.0 || !(-EXACT..=EXACT).contains(&v) {
            return Err(E::invalid_type(Unexpected::Float(v), &self));
        }
        #[allow(clippy::cast_possible_truncation)]
        let whole = v as i64;
        if whole >= 0 {
            Self::from_u64(whole.unsigned_abs())
        } else {
            Self::from_i64(whole)
        }
    }
}

/// An integer field: a whole number, with or without a fraction of zero.
pub fn whole<'de, D: Deserializer<'de>, T: Whole>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_any(WholeVisitor(PhantomData))
}

struct OptionVisitor<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OptionVisitor<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self.0).map(Some)
    }
}

/// An optional integer field (`null` is absent).
pub fn whole_option<'de, D: Deserializer<'de>, T: Whole>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(WholeVisitor(PhantomData)))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// An optional nested object (`null` is absent); an array is refused.
pub fn object_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(ObjectVisitor(PhantomData)))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default, deserialize_with = "super::whole_option")]
        a: Option<u8>,
        #[serde(deserialize_with = "super::whole")]
        b: i64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default, deserialize_with = "super::object_option")]
        inner: Option<Inner>,
    }

    fn read(json: &str) -> Result<Outer, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_with_a_zero_fraction_are_integers() {
        let inner = |a, b| {
            Ok(Outer {
                inner: Some(Inner { a, b }),
            })
        };
        assert_eq!(read(r#"{"inner": {"a": 5, "b": -3}}"#), inner(Some(5), -3));
        assert_eq!(
            read(r#"{"inner": {"a": 5.0, "b": -3.0}}"#),
            inner(Some(5), -3)
        );
        assert_eq!(
            read(r#"{"inner": {"a": 2.5e1, "b": 1e3}}"#),
            inner(Some(25), 1000)
        );
        assert_eq!(read(r#"{"inner": {"a": null, "b": 0}}"#), inner(None, 0));
        assert_eq!(read(r#"{"inner": {"b": -0.0}}"#), inner(None, 0));
        for bad in [
            r#"{"inner": {"a": 5.5, "b": 1}}"#,
            r#"{"inner": {"a": 256, "b": 1}}"#,
            r#"{"inner": {"a": 256.0, "b": 1}}"#,
            r#"{"inner": {"a": -1, "b": 1}}"#,
            r#"{"inner": {"a": "5", "b": 1}}"#,
            r#"{"inner": {"a": 1, "b": 1e300}}"#,
            r#"{"inner": {"a": 1}}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nested_objects_must_be_objects() {
        assert_eq!(read(r#"{"inner": null}"#), Ok(Outer { inner: None }));
        assert_eq!(read("{}"), Ok(Outer { inner: None }));
        let error = read(r#"{"inner": [null, 1]}"#).unwrap_err();
        assert!(error.contains("expected a JSON object"), "{error}");
        assert!(
            read(r#"{"inner": {"b": 1, "c": 2}}"#).is_err(),
            "unknown fields"
        );
    }
}
